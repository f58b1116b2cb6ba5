"""POST /v1/audio/speech streams: progress records when the stream ends or the client leaves; failures mid-way."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
import srt

from barkserve.errors import ModelUnavailable
from support import FakeEngine

LONG = " ".join(f"This is sentence number {i} of a text long enough to need several chunks." for i in range(12))
SPEECH = {"model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}
SEED = 500


def test_a_finished_stream_is_recorded(make_app: Any) -> None:
    client = make_app(engine_factory=FakeEngine).test_client()
    response = client.post("/v1/audio/speech", json=SPEECH)
    assert response.status_code == 200 and response.data
    record = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}").get_json()
    assert record["chunks_done"] == record["chunks_total"] == int(response.headers["X-Chunks"]) > 1
    assert record["finished_at"] is not None and record["error"] is None


def test_a_client_leaving_mid_stream_ends_the_record(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    client = app.test_client()
    response = client.post("/v1/audio/speech", json=SPEECH, buffered=False)
    total = int(response.headers["X-Chunks"])
    assert response.status_code == 200 and total > 2
    body = iter(response.response)
    assert next(body)  # the first chunk's audio
    response.close()  # what the WSGI server does when the client disconnects
    record = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}").get_json()
    assert record["error"] == "client disconnected" and record["finished_at"] is not None
    assert record["chunks_done"] < total
    # The pieces were closed with the response: the interactive gate is free at once, not at collection.
    assert app.extensions["barkserve"].synthesizer.gate.wait_idle(timeout=0)


# Stream failures after the first bytes: the status line and headers are gone, so what the client can
# still be told is an SSE `error` event, or, for plain audio, a body that ends early without its
# terminating chunk. The engine fails on the chunk whose text has FAIL_AT (not the first chunk).
FAIL_AT = "number five "  # as the engine is given it: numbers are spelled out (normalize)


class FailingEngine(FakeEngine):
    """FakeEngine that raises `error` for the chunk whose text has FAIL_AT (and only that chunk)."""

    error: Exception = ModelUnavailable("the model's device went away (test)")

    def __init__(self, loaded: Any) -> None:
        super().__init__(loaded)
        self.texts: dict[tuple[int, ...], str] = {}
        self.failed: list[int] = []  # seeds of the chunks that raised

    def tokenize(self, text: str) -> Any:
        ids = super().tokenize(text)
        self.texts[tuple(int(i) for i in ids)] = text
        return ids

    def generate(self, request: Any) -> Any:
        if FAIL_AT in self.texts[tuple(int(i) for i in request.text_ids)]:
            self.failed.append(request.options.seed)
            raise self.error
        return super().generate(request)


def failing(error: Exception) -> type[FailingEngine]:
    return type("Failing", (FailingEngine,), {"error": error})


def failed_chunk(app: Any, seed: int) -> int:
    """The index of the chunk that failed: its seed is the request's seed + its index."""
    synth = app.extensions["barkserve"].synthesizer
    engine = synth.engine(synth.config.default_model)
    assert len(set(engine.failed)) == 1, engine.failed
    return int(engine.failed[0]) - seed


def delivered_chunks(pcm: np.ndarray, seed: int) -> set[int]:
    """Which chunks' audio is in `pcm`: FakeEngine's flat samples are (seed % 1000) / 2000 (seeds here < 1000)."""
    values, counts = np.unique(pcm, return_counts=True)
    return {round(float(v) / 32767 * 2000) - seed for v in values[counts > 500] if v}


def sse_events(data: bytes) -> list[dict[str, Any]]:
    blocks = data.decode().split("\n\n")
    assert blocks[-1] == "" and all(b.startswith("data: ") for b in blocks[:-1]), data[-200:]
    return [json.loads(b[len("data: ") :]) for b in blocks[:-1]]


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (ModelUnavailable("the model's device went away (test)"), "model_unavailable", "device went away"),
        (RuntimeError("secret internal detail /srv/x"), "internal_error", "see the server log"),
    ],
)
def test_an_sse_stream_that_fails_mid_way_ends_with_one_error_event(
    make_app: Any, error: Exception, code: str, message: str
) -> None:
    app = make_app(engine_factory=failing(error))
    client = app.test_client()
    response = client.post("/v1/audio/speech", json={**SPEECH, "stream_format": "sse", "seed": SEED})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = sse_events(response.data)
    *deltas, last = events
    assert last == {"type": "error", "error": {"code": code, "message": last["error"]["message"]}}
    assert message in last["error"]["message"] and "/srv/x" not in response.get_data(as_text=True)
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)  # no `done` event
    # The audio that left is every chunk before the failed one, and nothing after.
    failed = failed_chunk(app, SEED)
    assert 0 < failed < int(response.headers["X-Chunks"]) - 1
    pcm = np.frombuffer(b"".join(base64.b64decode(e["audio"]) for e in deltas), dtype="<i2")
    assert delivered_chunks(pcm, SEED) == set(range(failed))
    record = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}").get_json()
    assert record["chunks_done"] == failed and record["finished_at"] is not None
    assert record["error"] == (str(error) if code != "internal_error" else "internal error; see the server log")


@pytest.fixture()
def live(make_app: Any) -> Iterator[tuple[str, Any]]:
    """A real waitress server (the settings `serve` uses) on a free port, its engine failing at chunk 3."""
    import waitress

    from barkserve.cli.serve import waitress_settings

    app = make_app(engine_factory=FailingEngine)
    config = app.extensions["barkserve"].config
    server = waitress.create_server(app, **{**waitress_settings(config), "host": "127.0.0.1", "port": 0})
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}", app
    finally:
        server.close()
        thread.join(timeout=30)


def test_an_audio_stream_that_fails_mid_way_is_cut_short_not_completed(live: tuple[str, Any]) -> None:
    import http.client
    from urllib.parse import urlsplit

    base, app = live
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    conn.request("POST", "/v1/audio/speech", json.dumps({**SPEECH, "seed": SEED}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    # The client sees the body stop before its last (zero-length) chunk: an incomplete read, not an
    # ordinary end it could mistake for the whole audio.
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    conn.close()
    pcm = np.frombuffer(cut.value.partial[: len(cut.value.partial) // 2 * 2], dtype="<i2")
    failed = failed_chunk(app, SEED)
    assert failed > 0 and delivered_chunks(pcm, SEED) == set(range(failed))
    # The server is still up and answers the next request.
    assert requests.get(f"{base}/health", timeout=30).status_code == 200


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_the_caption_file_is_written_before_the_last_audio_bytes_leave(make_app: Any, fmt: str) -> None:
    app = make_app(engine_factory=FakeEngine)
    client = app.test_client()
    response = client.post("/v1/audio/speech", json={**SPEECH, "response_format": fmt, "captions": "srt"},
                           buffered=False)  # fmt: skip
    assert response.status_code == 200
    path = app.extensions["barkserve"].config.output_dir / response.headers["X-Captions-Url"].rsplit("/", 1)[1]
    seen = []  # whether the file was there when each piece of the body arrived
    for data in response.response:
        seen.append((len(data), path.is_file()))
    response.close()
    assert len(seen) > 2
    # Absent while audio is still coming; present, complete, by the time the last bytes arrive.
    assert not any(there for _, there in seen[:-1]) and seen[-1][1], seen
    cues = list(srt.parse(path.read_text(encoding="utf-8")))
    assert len(cues) >= int(response.headers["X-Chunks"]) and cues[-1].content.endswith("chunks.")
