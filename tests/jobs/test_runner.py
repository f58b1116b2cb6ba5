"""The runner against other workers and interactive work: lost leases, the priority gate."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_jobs import BOOK, FAST, database_urls, fresh_url

from barkserve.jobs.files import JobFiles
from barkserve.jobs.runner import JobRunner
from barkserve.jobs.store import Job
from support import FakeEngine

HANG_GUARD_SEC = 60  # only stops a broken test from hanging; never a speed assertion


def blocking_engine() -> Any:
    """A fake engine class whose generate() sets its `entered` event, then waits for its `release`."""

    class BlockingEngine(FakeEngine):
        entered, release = threading.Event(), threading.Event()

        def generate(self, request: Any) -> Any:
            self.entered.set()
            assert self.release.wait(HANG_GUARD_SEC), "the test never released the engine"
            return super().generate(request)

    return BlockingEngine


@pytest.mark.parametrize("db", database_urls())
@pytest.mark.parametrize("noticed_by", ["heartbeat", "check-before-recording"])
def test_a_runner_that_lost_its_lease_stops_and_records_nothing(
    make_app: Any, tmp_path: Path, db: str, noticed_by: str
) -> None:
    engine_class = blocking_engine()
    app = make_app(engine_class, database_url=fresh_url(db, tmp_path))
    job_id = app.test_client().post("/jobs", json={"text": BOOK, **FAST}).get_json()["id"]
    state = app.extensions["barkserve"]
    runner = JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir, lease_sec=3600)  # no beat of its own
    with ThreadPoolExecutor(1) as pool:
        worked = pool.submit(runner.run_once)
        try:
            assert engine_class.entered.wait(HANG_GUARD_SEC)  # chunk 0 is being generated
            with state.jobs.session() as session:  # its lease lapsed and another process took the job
                session.get(Job, job_id).lease_owner = "other-process"
            if noticed_by == "heartbeat":
                assert runner.heartbeat is not None and not runner.heartbeat.renew()
                assert runner.heartbeat.lost.is_set()
        finally:
            engine_class.release.set()
        assert worked.result(HANG_GUARD_SEC)  # the old runner returned
    job, chunks = state.jobs.get(job_id), state.jobs.chunks(job_id)
    assert job.state == "running" and job.lease_owner == "other-process" and job.chunks_done == 0
    assert not chunks[0].done and chunks[0].path is None
    assert len(state.synthesizer.engine(state.config.default_model).requests) == 1  # no further chunk
    assert list((state.config.jobs_dir / job_id).iterdir()) == []  # nothing written over the new owner's files


@pytest.mark.parametrize("db", database_urls())
def test_a_lease_lost_while_a_chunk_is_written_is_not_recorded(
    make_app: Any, tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(FakeEngine, database_url=fresh_url(db, tmp_path))
    job_id = app.test_client().post("/jobs", json={"text": BOOK, **FAST}).get_json()["id"]
    state = app.extensions["barkserve"]
    real_write = JobFiles.write_chunk

    def write_then_lose_the_lease(self: JobFiles, index: int, audio: Any, generated: Any) -> Path:
        path = real_write(self, index, audio, generated)
        with state.jobs.session() as session:  # taken over after the last check, before the record
            session.get(Job, job_id).lease_owner = "other-process"
        return path

    monkeypatch.setattr(JobFiles, "write_chunk", write_then_lose_the_lease)
    assert JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir).run_once()
    job, chunks = state.jobs.get(job_id), state.jobs.chunks(job_id)
    assert job.state == "running" and job.lease_owner == "other-process" and job.chunks_done == 0
    assert not any(c.done for c in chunks) and job.audio_sec == 0
    assert len(state.synthesizer.engine(state.config.default_model).requests) == 1


def test_the_runner_waits_for_interactive_work_before_each_chunk(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(FakeEngine)
    job_id = app.test_client().post("/jobs", json={"text": BOOK, **FAST}).get_json()["id"]
    state = app.extensions["barkserve"]
    gate, engine = state.synthesizer.gate, state.synthesizer.engine(state.config.default_model)
    waited, progress, gate_busy = threading.Event(), threading.Event(), []
    real_wait_idle, real_generate = gate.wait_idle, engine.generate

    def wait_idle(timeout: float | None = None) -> bool:
        waited.set()
        progress.set()
        return real_wait_idle(timeout)

    def generate(request: Any) -> Any:
        gate_busy.append(not real_wait_idle(timeout=0))  # was interactive work in flight?
        progress.set()
        return real_generate(request)

    monkeypatch.setattr(gate, "wait_idle", wait_idle)
    monkeypatch.setattr(engine, "generate", generate)
    with ThreadPoolExecutor(1) as pool:
        with gate.interactive():  # an interactive request is in flight
            worked = pool.submit(state.runner.run_once)
            assert progress.wait(HANG_GUARD_SEC)  # the runner either waits at the gate or generates
            assert waited.is_set() and engine.requests == [] and gate_busy == []
        assert worked.result(HANG_GUARD_SEC)
    job = state.jobs.get(job_id)
    assert job.state == "succeeded" and job.chunks_total is not None and job.chunks_total > 3
    assert gate_busy == [False] * job.chunks_total
