"""GET /metrics: counters and histograms move by what known requests did; gauges read the app's state."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

SHORT = {"max_duration_sec": 0.3}


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_counters_and_latency_move_by_the_requests_made(make_app: Any) -> None:
    client = make_app().test_client()
    before = scrape(client)
    assert client.get("/health").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.post("/synthesize", json={"voice_preset": 1}).status_code == 400
    assert client.get("/jobs/abc/nothing-here").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "barkserve_http_requests_total"
    assert moved(total, route="/health", method="GET", status="200") == 2
    assert moved(total, route="/synthesize", method="POST", status="400") == 1
    # An unknown path is one label, whatever the path: the series count stays bounded.
    assert moved(total, route="unmatched", method="GET", status="404") == 1
    assert moved(total, route="/metrics", method="GET", status="200") == 1  # the first scrape
    latency = "barkserve_http_request_duration_seconds_count"
    assert moved(latency, route="/health", method="GET") == 2
    assert moved(latency, route="/synthesize", method="POST") == 1
    # A refused synthesis delivered no audio.
    assert moved("barkserve_audio_seconds_total", route="/synthesize") == 0
    assert not any(name.startswith("barkserve") and "abc" in str(labels) for name, labels in after)


def test_each_app_has_its_own_registry(make_app: Any) -> None:
    first, second = make_app().test_client(), make_app().test_client()
    first.get("/health")
    counted = "barkserve_http_requests_total"
    assert value(scrape(first), counted, route="/health", method="GET", status="200") == 1
    assert value(scrape(second), counted, route="/health", method="GET", status="200") == 0


def test_jobs_by_state_are_read_from_the_store(make_app: Any) -> None:
    client = make_app().test_client()
    samples = scrape(client)
    assert value(samples, "barkserve_jobs", state="queued") == 0
    for text in ("One job.", "Another job."):
        assert client.post("/jobs", json={"text": text}).status_code == 202
    samples = scrape(client)
    assert value(samples, "barkserve_jobs", state="queued") == 2
    assert value(samples, "barkserve_jobs", state="succeeded") == 0


def test_synthesis_adds_its_audio_seconds_and_loads_the_model(make_app: Any) -> None:
    app = make_app()
    client = app.test_client()
    model = app.extensions["barkserve"].config.default_model
    samples = scrape(client)
    assert value(samples, "barkserve_model_state", model=model, state="not_loaded") == 1
    assert value(samples, "barkserve_model_state", model=model, state="loaded") == 0
    durations = []
    for _ in range(2):
        response = client.post("/synthesize", json={"text": "Hello there.", **SHORT})
        assert response.status_code == 200
        durations.append(response.get_json()["duration_sec"])
    samples = scrape(client)
    assert value(samples, "barkserve_audio_seconds_total", route="/synthesize") == pytest.approx(sum(durations))
    assert value(samples, "barkserve_synthesis_seconds_total", route="/synthesize") > 0
    assert value(samples, "barkserve_model_state", model=model, state="loaded") == 1
    assert value(samples, "barkserve_model_state", model=model, state="not_loaded") == 0
    # The batched engine is idle between requests.
    assert (("barkserve_engine_queued_requests", (("model", model),))) in samples
    assert value(samples, "barkserve_engine_queued_requests", model=model) == 0
    assert value(samples, "barkserve_engine_running_rows", model=model) == 0


def test_streamed_speech_records_first_audio_and_audio_seconds(make_app: Any) -> None:
    client = make_app(max_duration_sec=0.3).test_client()
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello there. How are you?", "response_format": "wav"}
    response = client.post("/v1/audio/speech", json=body)
    assert response.status_code == 200 and len(response.data) > 44
    progress = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}").get_json()
    samples = scrape(client)
    assert value(samples, "barkserve_time_to_first_audio_seconds_count") == 1
    assert value(samples, "barkserve_audio_seconds_total", route="/v1/audio/speech") == pytest.approx(
        progress["audio_sec"]
    )
    assert progress["audio_sec"] > 0
    latency = "barkserve_http_request_duration_seconds_count"
    assert value(samples, latency, route="/v1/audio/speech", method="POST") == 1


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_one_access_line_per_request_without_the_text(
    make_app: Any, caplog: pytest.LogCaptureFixture, log_format: str
) -> None:
    client = make_app(log_format=log_format).test_client()
    secret = "a private sentence nobody should log"
    with caplog.at_level(logging.INFO, logger="barkserve.access"):
        response = client.post("/synthesize", json={"text": secret, **SHORT})
        client.post("/synthesize", json={"text": secret, "speed": 9})
    lines = [r.getMessage() for r in caplog.records if r.name == "barkserve.access"]
    assert len(lines) == 2
    assert not any(secret in line for line in lines)
    if log_format == "json":
        first, second = (json.loads(line) for line in lines)
        assert first["request_id"] == response.headers["X-Request-Id"]
        assert (first["route"], first["method"], first["status"]) == ("/synthesize", "POST", 200)
        assert first["audio_sec"] == response.get_json()["duration_sec"] and first["duration_s"] >= 0
        assert second["status"] == 400 and "audio_sec" not in second
    else:
        assert lines[0].startswith(f"request request_id={response.headers['X-Request-Id']} route=/synthesize ")
        assert "status=200" in lines[0] and "status=400" in lines[1]
