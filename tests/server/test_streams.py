"""POST /v1/audio/speech progress records: finished when the stream ends, and when the client leaves."""

from __future__ import annotations

from typing import Any

from support import FakeEngine

LONG = " ".join(f"This is sentence number {i} of a text long enough to need several chunks." for i in range(12))
SPEECH = {"model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}


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
