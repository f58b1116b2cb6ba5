"""Durable long-text jobs: a database of jobs and chunks, and a runner that resumes after a crash."""

from barkserve.jobs.runner import JobRunner
from barkserve.jobs.store import JobStore

__all__ = ["JobRunner", "JobStore"]
