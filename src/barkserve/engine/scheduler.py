"""Continuous batching: one thread owns the pipeline; callers submit tasks and wait on them.

Tasks that arrive while others run join the semantic stage at the next step (up to the free slots);
an idle engine waits up to `max_wait_ms` for more tasks before it starts, so that requests sent
together start together. The loop follows LitServe's: monotonic clock, bounded batch, one failure
fails only the batch it belongs to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from barkserve.engine.pipeline import Pipeline
from barkserve.engine.task import GenerationTask
from barkserve.errors import EngineClosed, GenerationCancelled

log = logging.getLogger(__name__)


class Scheduler:
    """Feeds submitted tasks to a `Pipeline` from one background thread."""

    def __init__(self, pipeline: Pipeline, max_wait_ms: float) -> None:
        self.pipeline = pipeline
        self.max_wait_s = max_wait_ms / 1000.0
        self._pending: deque[GenerationTask] = deque()
        self._first_audio: deque[GenerationTask] = deque()  # streams' first chunks: admitted first
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, task: GenerationTask) -> GenerationTask:
        """Queue a task; the engine thread starts on first use."""
        with self._cond:
            if self._closed:
                raise EngineClosed("the engine is closed; create a new one")
            (self._first_audio if task.request.first_audio else self._pending).append(task)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="barkserve-engine", daemon=True)
                self._thread.start()
            self._cond.notify()
        return task

    def close(self, timeout: float | None = None) -> None:
        """Stop taking tasks, let the running ones finish, fail the queued ones, stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                tasks = self._next_tasks()
                if tasks is None:
                    self.pipeline.close()  # the tasks in the fine worker finish first
                    break
                try:
                    self.pipeline.iterate(tasks)
                except Exception as exc:  # a bug outside the per-stage guards: fail what is in flight
                    log.exception("engine step failed")
                    for task in tasks:
                        if not task.finished:
                            task.fail(exc)
                    self.pipeline.fail_all(exc)

    def _next_tasks(self) -> list[GenerationTask] | None:
        """New tasks for the next step; blocks while the engine has nothing to do. None: shut down."""
        with self._cond:
            if not self.pipeline.busy:
                self._wait_for_batch()
            if self._closed and not self.pipeline.busy:
                self._fail_queued()
                return None
            return self._admit(self.pipeline.free)

    def _wait_for_batch(self) -> None:
        """Idle engine: wait for a first task, then up to `max_wait_ms` for the batch to fill (lock held)."""
        while not self.queued and not self._closed:
            self._cond.wait()
        deadline = time.monotonic() + self.max_wait_s
        while self.queued < self.pipeline.free and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)

    @property
    def queued(self) -> int:
        """Tasks waiting for a slot (a metrics scrape reads it without the lock: a step stale at worst)."""
        return len(self._first_audio) + len(self._pending)

    def _admit(self, free: int) -> list[GenerationTask]:
        """Up to `free` queued tasks, first-audio ones first, then oldest first; cancelled ones fail (lock held)."""
        tasks: list[GenerationTask] = []
        while self.queued and len(tasks) < free and not self._closed:
            task = (self._first_audio or self._pending).popleft()
            if task.cancelled:
                task.fail(GenerationCancelled("the request was cancelled before it started"))
            else:
                tasks.append(task)
        return tasks

    def _fail_queued(self) -> None:
        """Shutting down: fail every task still queued (lock held)."""
        for task in (*self._first_audio, *self._pending):
            task.fail(EngineClosed("the engine was closed before this request ran"))
        self._first_audio.clear()
        self._pending.clear()
