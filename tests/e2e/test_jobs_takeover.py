"""Two `barkserve serve` processes on one PostgreSQL database and one jobs folder take over each other's
jobs: the process running a job is frozen mid-job (SIGSTOP, so how far it got does not depend on the
machine's load), the other one is started, the frozen one is SIGKILLed; the survivor finishes the job
without making again any chunk that was done. Then the same the other way round."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf

from barkserve.jobs.store import JobStore
from serverproc import running_server, wait_for
from support import missing

pytestmark = pytest.mark.slow
TEXT = " ".join(
    f"Part {i} begins here and keeps going with quite a few words, enough that two of these never fit in "
    f"one chunk, and then it ends with a full stop."
    for i in range(16)
)
OPTIONS = {"max_duration_sec": 0.1, "sentence_pause_sec": 0.1, "format": "wav"}


@pytest.fixture()
def database_url() -> str:
    """The PostgreSQL server of BARKSERVE_TEST_DATABASE_URL, its tables emptied."""
    from barkserve.jobs.store import Base

    url = os.environ.get("BARKSERVE_TEST_DATABASE_URL", "")
    if not url:
        missing("set BARKSERVE_TEST_DATABASE_URL to test on PostgreSQL (.ci/postgres.sh starts one)")
    engine = JobStore(url).db
    Base.metadata.drop_all(engine)
    engine.dispose()
    return url


def freeze_mid_job(base: str, store: JobStore, job_id: str) -> tuple[int, list[int]]:
    """Freeze the serving process once it has made 3 chunks of the job; its pid and the chunks done."""
    pid = int(requests.get(f"{base}/health", timeout=30).json()["pid"])
    wait_for(lambda: sum(c.done for c in store.chunks(job_id)) >= 3, "3 chunks")
    os.kill(pid, signal.SIGSTOP)
    done = [c.index for c in store.chunks(job_id) if c.done]
    assert 3 <= len(done) < len(store.chunks(job_id)), done
    return pid, done


def finished(base: str, job_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (j := requests.get(f"{base}/jobs/{job_id}", timeout=30).json())["state"] in ("succeeded", "failed") and j
        ),
        "the job to finish",
        every=0.2,
    )


def check_taken_over(base: str, store: JobStore, jobs: Path, job_id: str, done_before: list[int]) -> None:
    final = finished(base, job_id)
    rows = store.chunks(job_id)
    assert final["state"] == "succeeded" and final["chunks_done"] == len(rows), final
    assert all(r.done for r in rows)
    assert all(rows[i].attempts == 1 for i in done_before)  # nothing done before the kill was made again
    # The audio is every chunk file in order: those of the killed process, then the survivor's.
    pieces = [np.load(jobs / job_id / f"chunk_{i:05d}.npz")["audio"] for i in range(len(rows))]
    audio, rate = sf.read(io.BytesIO(requests.get(f"{base}/jobs/{job_id}/audio", timeout=60).content), dtype="float32")
    assert rate == 24_000 and len(audio) == sum(len(p) for p in pieces)
    assert np.max(np.abs(audio - np.clip(np.concatenate(pieces), -1, 1))) < 1e-4


def test_two_processes_take_over_each_others_jobs_after_sigkill(
    tiny_model_dir: Path, tmp_path: Path, database_url: str
) -> None:
    jobs = tmp_path / "jobs"  # shared, like a volume both processes mount
    shared = ("--database-url", database_url, "--jobs-dir", str(jobs), "--job-lease-sec", "2")
    store = JobStore(database_url)
    for name in ("a", "b", "a2"):
        (tmp_path / name).mkdir()
    with running_server(tiny_model_dir, tmp_path / "a", *shared) as a:
        created = requests.post(f"{a}/jobs", json={"text": TEXT, "seed": 4, **OPTIONS}, timeout=60)
        assert created.status_code == 202, created.text
        first = created.json()["id"]
        pid_a, done_by_a = freeze_mid_job(a, store, first)
        owner_a = store.get(first).lease_owner
        with running_server(tiny_model_dir, tmp_path / "b", *shared) as b:
            os.kill(pid_a, signal.SIGKILL)  # A dies mid-job, holding its lease
            check_taken_over(b, store, jobs, first, done_by_a)
            assert store.get(first).lease_owner != owner_a or store.get(first).lease_owner is None
            # B now runs a job of its own, and dies the same way; A, started again, takes it over.
            second = requests.post(f"{b}/jobs", json={"text": TEXT, "seed": 5, **OPTIONS}, timeout=60).json()["id"]
            pid_b, done_by_b = freeze_mid_job(b, store, second)
            with running_server(tiny_model_dir, tmp_path / "a2", *shared) as a2:
                os.kill(pid_b, signal.SIGKILL)
                check_taken_over(a2, store, jobs, second, done_by_b)
                # The first job is still whole, served by the new process from the shared folder.
                assert requests.get(f"{a2}/jobs/{first}", timeout=30).json()["state"] == "succeeded"
