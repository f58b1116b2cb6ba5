"""End to end: `barkserve serve` as a real process on 127.0.0.1, called over HTTP."""

import io
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import soundfile as sf

from serverproc import running_server


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("e2e")
    with running_server(tiny_model_dir, root) as base:
        yield base
    log = (root / "server.log").read_text()
    assert "barkserve listening on http://127.0.0.1" in log and "api_keys=off" in log  # the Quickstart: no keys


def check_wav(base: str, body: dict) -> bytes:
    audio = requests.get(base + body["url"], timeout=30)
    assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/wav"
    info = sf.info(io.BytesIO(audio.content))
    assert info.samplerate == 24_000 and info.channels == 1 and info.format == "WAV"
    assert info.frames / info.samplerate == pytest.approx(body["duration_sec"], abs=1e-3)
    return audio.content


def test_synthesize_then_download(server: str) -> None:
    text = "Hello, my dog is cute [laughs]"
    response = requests.post(
        f"{server}/synthesize", json={"text": text, "voice_preset": 3, "max_duration_sec": 0.6}, timeout=300
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == text and body["voice_preset"] == "v2/en_speaker_3"
    assert body["duration_sec"] > 0
    check_wav(server, body)
    health = requests.get(f"{server}/health", timeout=10).json()
    assert next(iter(health["models"].values()))["state"] == "loaded"


def test_eight_simultaneous_requests(server: str) -> None:
    def call(i: int) -> dict:
        payload = {"text": f"Request number {i}.", "voice_preset": i % 10, "seed": i, "max_duration_sec": 0.3}
        response = requests.post(f"{server}/synthesize", json=payload, timeout=600)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(call, range(8)))
    assert len({b["filename"] for b in bodies}) == 8
    assert [b["seed"] for b in bodies] == list(range(8))
    contents = [check_wav(server, b) for b in bodies]
    assert len(set(contents)) == 8


def test_bad_input_over_the_wire(server: str) -> None:
    response = requests.post(f"{server}/synthesize", data="{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_sigterm_stops_the_server_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    import signal

    with running_server(tiny_model_dir, tmp_path) as base:
        pid = int(requests.get(f"{base}/health", timeout=10).json()["pid"])
        assert requests.post(f"{base}/synthesize", json={"text": "Bye.", "max_duration_sec": 0.2}).status_code == 200
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60  # a guard against a hang, not a speed assertion
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/health", timeout=1)
            except requests.ConnectionError:
                break
            except requests.Timeout:  # a loaded machine: the server is still stopping; ask again
                continue
            time.sleep(0.2)
    assert "barkserve stopped" in (tmp_path / "server.log").read_text()
