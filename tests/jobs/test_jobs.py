"""Durable jobs: the store on SQLite (and PostgreSQL when available), the API, the runner."""

import datetime as dt
import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from flask import Flask
from flask.testing import FlaskClient

from barkserve.errors import InvalidVoice, ModelUnavailable, ReplicaLost
from barkserve.jobs import files as files_module
from barkserve.jobs import runner as runner_module
from barkserve.jobs.store import Conflict, JobStore, utcnow
from barkserve.synthesizer import PriorityGate
from support import FakeEngine, missing

BOOK = " ".join(f"Sentence {i} of the book. [laughs] It goes on for a while, then ends." for i in range(12))
FAST = {"max_duration_sec": 0.1, "sentence_pause_sec": 0.1, "seed": 9}


def database_urls() -> list:
    return [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]


def fresh_url(param: str, tmp_path: Path) -> str:
    """SQLite in the test's folder, or the PostgreSQL server with empty tables."""
    if param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    from barkserve.jobs.store import Base

    param = os.environ.get("BARKSERVE_TEST_DATABASE_URL", "")
    if not param:
        missing("set BARKSERVE_TEST_DATABASE_URL to test on PostgreSQL (.ci/postgres.sh starts one)")
    engine = JobStore(param).db
    Base.metadata.drop_all(engine)
    engine.dispose()
    return param


@pytest.fixture(params=database_urls())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    return JobStore(fresh_url(request.param, tmp_path))


def new_job(store: JobStore, key: str | None = None, text: str = "hello") -> tuple:
    fields = {"text": text, "voice": "v2/en_speaker_1", "model": "m", "format": "mp3", "options": {"seed": 1}}
    return store.create(idempotency_key=key, request_hash=text, **fields)


def test_store_basics(store: JobStore) -> None:
    if store.url.startswith("sqlite"):
        with store.db.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    job, created = new_job(store, key="k1")
    again, created_again = new_job(store, key="k1")
    assert created and not created_again and again.id == job.id
    with pytest.raises(Conflict, match="different request"):
        new_job(store, key="k1", text="another text")
    jobs = [new_job(store)[0] for _ in range(4)]
    page, total = store.page(2, 0)
    assert total == 5 and len(page) == 2
    assert {j.id for j in store.page(10, 0)[0]} == {job.id, *(j.id for j in jobs)}
    store.cancel(jobs[0].id)
    with pytest.raises(Conflict, match="already cancelled"):
        store.cancel(jobs[0].id)
    assert store.page(10, 0, "cancelled")[1] == 1


def test_claims_are_exclusive_and_leases_expire(store: JobStore) -> None:
    job, _ = new_job(store)
    assert store.claim("a", lease_sec=60) is not None
    assert store.claim("b", lease_sec=60) is None  # held by a
    assert not store.renew(job.id, "b", 60) and store.renew(job.id, "a", 60)
    with store.session() as session:  # a's process died: its lease lapses
        session.get(type(job), job.id).lease_until = utcnow() - dt.timedelta(seconds=1)
    taken = store.claim("b", lease_sec=60)
    assert taken is not None and taken.id == job.id and taken.lease_owner == "b"
    store.plan_chunks(job.id, ["one", "two"])
    store.plan_chunks(job.id, ["different", "plan", "ignored"])  # a resumed job keeps its rows
    assert [c.text for c in store.chunks(job.id)] == ["one", "two"]


def test_only_the_lease_holder_records_progress(store: JobStore) -> None:
    job, _ = new_job(store)
    store.claim("a", lease_sec=60)
    assert not store.plan_chunks(job.id, ["one", "two"], owner="b") and store.chunks(job.id) == []
    assert store.plan_chunks(job.id, ["one", "two"], owner="a") and store.holds(job.id, "a")
    with store.session() as session:  # a's lease lapsed and b took the job over
        session.get(type(job), job.id).lease_owner = "b"
    assert not store.holds(job.id, "a") and store.holds(job.id, "b")
    assert not store.finish_chunk(job.id, 0, "a.npz", 10, 1.0, 2.0, owner="a")
    assert not store.finish(job.id, "failed", "a's error", owner="a")
    after = store.get(job.id)
    assert after.state == "running" and after.chunks_done == 0 and after.error is None
    assert not store.chunks(job.id)[0].done and store.chunks(job.id)[0].path is None
    assert store.finish_chunk(job.id, 0, "b.npz", 10, 1.0, 2.0, owner="b")
    assert store.get(job.id).chunks_done == 1 and store.chunks(job.id)[0].path == "b.npz"
    store.cancel(job.id)
    assert not store.finish_chunk(job.id, 1, "b.npz", 10, 1.0, 2.0, owner="b")  # no longer running
    assert not store.holds(job.id, "b") and store.get(job.id).chunks_done == 1


def test_expired_jobs_are_removed(store: JobStore) -> None:
    job, _ = new_job(store)
    store.claim("a", 60)
    store.finish(job.id, "succeeded")
    assert store.expired(utcnow() - dt.timedelta(hours=1)) == []
    assert store.expired(utcnow() + dt.timedelta(seconds=1)) == [job.id]
    store.delete(job.id)
    assert store.page(10, 0)[1] == 0


def test_priority_gate_holds_background_work_until_interactive_work_ends() -> None:
    gate = PriorityGate()
    assert gate.wait_idle(timeout=0)
    entered, release, events = threading.Event(), threading.Event(), []

    def interactive() -> None:
        with gate.interactive():
            entered.set()
            release.wait()
            events.append("interactive done")

    worker = threading.Thread(target=interactive)
    worker.start()
    entered.wait()
    assert not gate.wait_idle(timeout=0.05)
    release.set()
    assert gate.wait_idle(timeout=30)
    events.append("background may run")
    worker.join()
    assert events == ["interactive done", "background may run"]


@pytest.fixture(params=database_urls())
def app(request: pytest.FixtureRequest, make_app: Any, tmp_path: Path) -> Flask:
    url = fresh_url(request.param, tmp_path)
    return make_app(database_url=url, max_upload_bytes=50_000, job_retention_hours=1.0)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def run_jobs(app: Flask) -> None:
    runner = app.extensions["barkserve"].runner
    while runner.run_once():
        pass


def test_job_lifecycle(app: Flask, client: FlaskClient) -> None:
    response = client.post("/jobs", json={"text": BOOK, "voice_preset": 4, **FAST})
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/jobs/{job['id']}" == job["location"]
    assert job["state"] == "queued" and job["voice"] == "v2/en_speaker_4" and job["format"] == "mp3"
    assert client.get(f"/jobs/{job['id']}/audio").status_code == 409
    run_jobs(app)
    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded" and done["chunks_done"] == done["chunks_total"] > 3
    chunks = client.get(f"/jobs/{job['id']}/chunks").get_json()["chunks"]
    assert [c["attempts"] for c in chunks] == [1] * len(chunks)
    wav = client.get(f"/jobs/{job['id']}/audio?format=wav")
    assert wav.status_code == 200 and wav.mimetype == "audio/wav"
    audio, rate = sf.read(io.BytesIO(wav.data), dtype="float32")
    folder = app.extensions["barkserve"].config.jobs_dir / job["id"]
    pieces = [np.load(folder / f"chunk_{c['index']:05d}.npz")["audio"] for c in chunks]
    assert rate == 24_000 and len(audio) == sum(len(p) for p in pieces) == sum(c["samples"] for c in chunks)
    assert np.max(np.abs(audio - np.clip(np.concatenate(pieces), -1, 1))) < 1e-4
    assert done["audio_sec"] == pytest.approx(len(audio) / rate, abs=1e-2)
    mp3 = client.get(f"/jobs/{job['id']}/audio")
    assert mp3.status_code == 200 and mp3.mimetype == "audio/mpeg"
    assert client.delete(f"/jobs/{job['id']}").status_code == 409


def test_idempotent_post_and_listing(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "book-42"}
    first = client.post("/jobs", json={"text": BOOK, **FAST}, headers=headers)
    retry = client.post("/jobs", json={"text": BOOK, **FAST}, headers=headers)
    assert first.status_code == 202 and retry.status_code == 200
    assert retry.get_json()["id"] == first.get_json()["id"] and retry.headers["Idempotent-Replayed"] == "true"
    other = client.post("/jobs", json={"text": "Different.", **FAST}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.get_json()["error"]["message"]
    for _ in range(3):
        client.post("/jobs", json={"text": "Another one.", **FAST})
    page = client.get("/jobs?limit=2&offset=0").get_json()
    assert page["total"] == 4 and len(page["jobs"]) == 2 and page["next_offset"] == 2
    last = client.get("/jobs?limit=2&offset=2").get_json()
    assert last["next_offset"] is None and {j["id"] for j in page["jobs"]}.isdisjoint(j["id"] for j in last["jobs"])


def test_a_job_cancelled_while_queued_never_runs(app: Flask, client: FlaskClient) -> None:
    job = client.post("/jobs", json={"text": BOOK, **FAST}).get_json()
    cancelled = client.delete(f"/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    run_jobs(app)
    assert client.get(f"/jobs/{job['id']}").get_json()["chunks_done"] == 0


def test_cancel_stops_a_running_job(app: Flask, client: FlaskClient) -> None:
    # Cancelled from the runner's own per-chunk hook, right after chunk 0 is recorded.
    job_id = client.post("/jobs", json={"text": BOOK, **FAST}).get_json()["id"]
    state = app.extensions["barkserve"]

    def cancel_after_one(job: Any) -> None:
        if job.chunks_done == 1:
            assert client.delete(f"/jobs/{job.id}").status_code == 200

    runner = runner_module.JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir, on_chunk=cancel_after_one)
    assert runner.run_once()
    after = client.get(f"/jobs/{job_id}").get_json()
    chunks = client.get(f"/jobs/{job_id}/chunks").get_json()["chunks"]
    assert after["state"] == "cancelled" and after["chunks_done"] == 1 and after["chunks_total"] > 3
    assert [c["attempts"] for c in chunks] == [1] + [0] * (len(chunks) - 1)  # no chunk after it was started
    assert [p.name for p in (state.config.jobs_dir / job_id).iterdir()] == ["chunk_00000.npz"]
    assert not runner.run_once()  # a cancelled job is not claimed again
    assert client.get(f"/jobs/{job_id}").get_json()["state"] == "cancelled"


def test_upload_txt_and_md(app: Flask, client: FlaskClient) -> None:
    md = b"# Chapter 1\n\nIt was **dark**. [laughs] See [the map](http://x.y).\n"
    data = {"file": (io.BytesIO(md), "book.md"), "voice_preset": "2", "format": "wav", "max_duration_sec": "0.1"}
    response = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.data
    job = app.extensions["barkserve"].jobs.get(response.get_json()["id"])
    # The heading is read as a sentence of its own (a full stop added), then the text without markup.
    assert job.text.split() == ["Chapter", "1.", "It", "was", "dark.", "[laughs]", "See", "the", "map."]
    assert job.voice == "v2/en_speaker_2" and job.format == "wav" and job.options["max_duration_sec"] == 0.1


BAD_JOBS = [
    ("no text", {"json": {"voice_preset": 1}}, 400, "text"),
    ("empty text", {"json": {"text": " "}}, 400, "something to speak"),
    ("zero-width text", {"json": {"text": "\u200b\ufeff\u202e\x00"}}, 400, "invisible format"),
    ("lone surrogate", {"json": {"text": "hi \ud800"}}, 400, "surrogate"),
    ("bad voice", {"json": {"text": "hi", "voice_preset": 42}}, 400, "0-9"),
    ("bad model", {"json": {"text": "hi", "model": "evil/repo"}}, 400, "must be one of"),
    ("bad format", {"json": {"text": "hi", "format": "ogg"}}, 400, "format"),
    ("bad option", {"json": {"text": "hi", "text_temp": -2}}, 400, "text_temp"),
    ("unknown field", {"json": {"text": "hi", "colour": "red"}}, 400, "unknown field"),
    ("wrong file type", {"data": {"file": (b"hi", "book.doc")}}, 415, ".epub"),
    ("corrupt pdf", {"data": {"file": (b"hi", "book.pdf")}}, 400, "not a readable PDF"),
    ("not utf-8", {"data": {"file": (b"\xff\xfe\xfa", "book.txt")}}, 400, "UTF-8"),
    ("bad form option", {"data": {"file": (b"hi", "b.txt"), "seed": "x"}}, 400, "seed"),
    ("oversized upload", {"data": {"file": (b"a " * 40_000, "b.txt")}}, 413, "max_upload_bytes"),
    ("oversized json", {"json": {"text": "a " * 40_000}}, 413, "max_upload_bytes"),
]


@pytest.mark.parametrize(("case", "kwargs", "status", "needle"), BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
def test_bad_job_requests(client: FlaskClient, case: str, kwargs: dict, status: int, needle: str) -> None:
    if "data" in kwargs:  # a fresh file object per run: the client closes what it sends
        content, filename = kwargs["data"]["file"]
        kwargs = {"data": {**kwargs["data"], "file": (io.BytesIO(content), filename)}}
    response = client.post("/jobs", **kwargs)
    assert response.status_code == status, response.data
    assert needle in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/jobs/nope", 404),
        ("get", "/jobs/nope/audio", 404),
        ("delete", "/jobs/nope", 404),
        ("get", "/jobs?limit=0", 400),
        ("get", "/jobs?limit=abc", 400),
        ("get", "/jobs?state=dancing", 400),
        ("put", "/jobs", 405),
    ],
)
def test_bad_job_routes(client: FlaskClient, method: str, url: str, status: int) -> None:
    response = getattr(client, method)(url)
    assert response.status_code == status and "message" in response.get_json()["error"]
    if status == 405:  # RFC 9110: a 405 says which methods the resource takes
        assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


def test_a_job_without_any_sound_fails_clearly(app: Flask, client: FlaskClient) -> None:
    # A floor this low stops every chunk at its first token: there is no audio to assemble.
    job = client.post("/jobs", json={"text": "Stop. Now.", "min_eos_p": 1e-9, **FAST}).get_json()
    run_jobs(app)
    failed = client.get(f"/jobs/{job['id']}").get_json()
    assert failed["state"] == "failed" and "no audio" in failed["error"] and "seed" in failed["error"]
    assert client.get(f"/jobs/{job['id']}/audio").status_code == 409


def test_a_failed_write_fails_the_job_clearly(app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = files_module.atomic_write

    def disk_full(path: Path, write: Any) -> None:
        if path.suffix == ".npz":  # a chunk's checkpoint
            raise OSError(28, "No space left on device")
        real_write(path, write)

    monkeypatch.setattr(files_module, "atomic_write", disk_full)
    job = client.post("/jobs", json={"text": BOOK, **FAST}).get_json()
    run_jobs(app)
    failed = client.get(f"/jobs/{job['id']}").get_json()
    assert failed["state"] == "failed" and "No space left on device" in failed["error"] and "chunk 0" in failed["error"]


def test_retention_removes_files_and_rows(app: Flask, client: FlaskClient) -> None:
    job = client.post("/jobs", json={"text": "Short book.", **FAST}).get_json()
    run_jobs(app)
    state = app.extensions["barkserve"]
    folder = state.config.jobs_dir / job["id"]
    assert folder.is_dir()
    with state.jobs.session() as session:  # finished two hours ago, retention is one hour
        from barkserve.jobs.store import Job

        session.get(Job, job["id"]).finished_at = utcnow() - dt.timedelta(hours=2)
    state.runner.cleanup()
    assert not folder.exists() and client.get(f"/jobs/{job['id']}").status_code == 404


def test_a_job_longer_than_one_request_succeeds(make_app: Any) -> None:
    # Jobs are checked and planned with max_job_chars, not the single-request max_text_chars.
    text = " ".join(f"Sentence number {i} of a long book, read aloud in order." for i in range(460))[:25_000]
    app = make_app(FakeEngine, max_text_chars=20_000)
    client = app.test_client()
    assert client.post("/synthesize", json={"text": text}).status_code == 400  # over max_text_chars
    created = client.post("/jobs", json={"text": text, "format": "wav", "seed": 5})
    assert created.status_code == 202, created.data
    run_jobs(app)
    done = client.get(f"/jobs/{created.get_json()['id']}").get_json()
    assert done["state"] == "succeeded", done["error"]
    assert done["chunks_done"] == done["chunks_total"] > 50


class BrokenEngine(FakeEngine):
    """Raises what a CUDA out-of-memory or a shape bug raises: a plain RuntimeError."""

    def generate(self, request: Any) -> Any:
        self.requests.append(request)
        raise RuntimeError("CUDA out of memory (simulated)")


def test_an_unexpected_engine_error_fails_the_job_after_the_attempt_cap(make_app: Any) -> None:
    app = make_app(BrokenEngine)
    client = app.test_client()
    job = client.post("/jobs", json={"text": BOOK, **FAST}).get_json()
    runner = app.extensions["barkserve"].runner
    claims = 0
    while runner.run_once():  # each claim after a failure retries the same chunk
        claims += 1
        assert claims <= runner_module.MAX_CHUNK_ATTEMPTS, "the job was claimed again after its attempts ran out"
    failed = client.get(f"/jobs/{job['id']}").get_json()
    assert claims == runner_module.MAX_CHUNK_ATTEMPTS
    assert failed["state"] == "failed"
    assert "RuntimeError" in failed["error"] and "CUDA out of memory" in failed["error"]
    chunks = client.get(f"/jobs/{job['id']}/chunks").get_json()["chunks"]
    assert chunks[0]["attempts"] == runner_module.MAX_CHUNK_ATTEMPTS and not chunks[0]["done"]
    assert all(c["attempts"] == 0 for c in chunks[1:])


class FailsOnce(FakeEngine):
    """Raises `error` on its first request, then works."""

    error: Exception = RuntimeError()

    def generate(self, request: Any) -> Any:
        if not self.requests:
            self.requests.append(request)
            raise self.error
        return super().generate(request)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ReplicaLost("the replica died"), True),  # batch's answer too
        (ModelUnavailable("out of memory while loading"), True),  # batch retried it; jobs failed at once
        (RuntimeError("CUDA out of memory (simulated)"), True),
        (OSError(28, "No space left on device"), False),  # jobs failed at once; batch retried it
        (InvalidVoice("no such voice"), False),
    ],
)
def test_a_chunk_error_is_retried_when_the_error_says_so(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, error: Exception, retried: bool
) -> None:
    monkeypatch.setattr(FailsOnce, "error", error)
    app = make_app(FailsOnce)
    client = app.test_client()
    job = client.post("/jobs", json={"text": "One sentence.", **FAST}).get_json()
    run_jobs(app)
    done = client.get(f"/jobs/{job['id']}").get_json()
    attempts = [c["attempts"] for c in client.get(f"/jobs/{job['id']}/chunks").get_json()["chunks"]]
    assert (done["state"], attempts) == (("succeeded", [2]) if retried else ("failed", [1]))


def test_a_job_whose_chunks_changed_fails_with_a_clear_reason(app: Flask, client: FlaskClient) -> None:
    job = client.post("/jobs", json={"text": BOOK, **FAST}).get_json()
    store = app.extensions["barkserve"].jobs
    store.plan_chunks(job["id"], ["a plan made by an older version"])  # one chunk; the text now gives more
    run_jobs(app)
    failed = client.get(f"/jobs/{job['id']}").get_json()
    assert failed["state"] == "failed" and "submit it again" in failed["error"] and "ValueError" not in failed["error"]


def test_ctrl_c_keeps_finished_chunks_and_the_next_run_resumes(make_app: Any) -> None:
    # The interruption is deterministic: the runner's own per-chunk hook raises it after 3 chunks.
    app = make_app(FakeEngine)
    client = app.test_client()
    job_id = client.post("/jobs", json={"text": BOOK, **FAST}).get_json()["id"]
    state = app.extensions["barkserve"]

    def interrupt_after_three(job: Any) -> None:
        if job.chunks_done == 3:
            raise KeyboardInterrupt

    first = runner_module.JobRunner(
        state.jobs, state.synthesizer, state.config.jobs_dir, on_chunk=interrupt_after_three
    )
    with pytest.raises(KeyboardInterrupt):
        first.run_once()
    stopped = state.jobs.get(job_id)
    assert stopped.state == "running" and stopped.chunks_done == 3 and stopped.lease_owner is None  # released
    engine = state.synthesizer.engine(state.config.default_model)
    assert len(engine.requests) == 3
    second = runner_module.JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir)
    assert second.run_once()  # claimable at once: no lease to wait for
    chunks = client.get(f"/jobs/{job_id}/chunks").get_json()["chunks"]
    assert client.get(f"/jobs/{job_id}").get_json()["state"] == "succeeded"
    assert [c["attempts"] for c in chunks] == [1] * len(chunks)
    assert [r.options.seed for r in engine.requests] == [9 + i for i in range(len(chunks))]
