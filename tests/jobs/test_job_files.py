"""A job's files: lazy format conversion made once, complete, under concurrent requests."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from flask import Flask

from support import FakeEngine

TEXT = " ".join(f"Sentence {i} of a short book, read aloud in order." for i in range(6))
PARALLEL = 8


@pytest.fixture()
def finished(make_app: Any) -> tuple[Flask, str]:
    """An app on the fake engine holding one succeeded job (its own format: wav)."""
    app = make_app(FakeEngine)
    client = app.test_client()
    job_id = client.post("/jobs", json={"text": TEXT, "format": "wav", "seed": 3}).get_json()["id"]
    runner = app.extensions["barkserve"].runner
    while runner.run_once():
        pass
    assert client.get(f"/jobs/{job_id}").get_json()["state"] == "succeeded"
    return app, job_id


def leftovers(folder: Path) -> list[str]:
    """Names in a job folder that are not chunk checkpoints, final files or captions (temp files)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(("chunk_", "final.", "captions.")))


def test_parallel_requests_for_an_unconverted_format_all_get_the_whole_file(finished: tuple[Flask, str]) -> None:
    app, job_id = finished
    folder = app.extensions["barkserve"].config.jobs_dir / job_id
    assert not (folder / "final.mp3").exists()
    flac, rate = sf.read(folder / "final.flac", dtype="float32")
    start = threading.Barrier(PARALLEL)

    def fetch(_: int) -> Any:
        client = app.test_client()
        start.wait()
        return client.get(f"/jobs/{job_id}/audio?format=mp3")

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(fetch, range(PARALLEL)))
    assert [a.status_code for a in answers] == [200] * PARALLEL
    bodies = {a.data for a in answers}
    assert len(bodies) == 1 and bodies == {(folder / "final.mp3").read_bytes()}
    audio, mp3_rate = sf.read(io.BytesIO(bodies.pop()), dtype="float32")
    # MP3 pads its start and end by under two frames: a truncated file would be far shorter
    assert mp3_rate == rate and abs(len(audio) - len(flac)) < 2 * 1152
    assert leftovers(folder) == []


def test_ensure_converts_once_even_when_called_together(
    finished: tuple[Flask, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from barkserve.jobs import files as files_module

    app, job_id = finished
    jobs = files_module.JobFiles(app.extensions["barkserve"].config.jobs_dir, job_id)
    encoded, real_encode = [], files_module.encode

    def counting_encode(audio: np.ndarray, rate: int, fmt: Any) -> bytes:
        encoded.append(fmt.name)
        return real_encode(audio, rate, fmt)

    monkeypatch.setattr(files_module, "encode", counting_encode)
    start = threading.Barrier(PARALLEL)

    def ensure(_: int) -> Path:
        start.wait()
        return jobs.ensure("opus")

    with ThreadPoolExecutor(PARALLEL) as pool:
        paths = set(pool.map(ensure, range(PARALLEL)))
    assert paths == {jobs.final("opus")} and encoded == ["opus"]
    assert sf.info(str(jobs.final("opus"))).frames > 0
    assert leftovers(jobs.folder) == []
