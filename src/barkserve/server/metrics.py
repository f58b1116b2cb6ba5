"""Prometheus metrics of one app, and the request hooks that feed them and the access log."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from barkserve.engine import QueuingEngine
from barkserve.server.access_log import RequestRecord, log_request
from barkserve.server.state import EXTENSION as STATE_EXTENSION
from barkserve.server.state import AppState

log = logging.getLogger(__name__)
EXTENSION = "barkserve.metrics"
SYNTHESIZE_ROUTE = "/synthesize"
SPEECH_ROUTE = "/v1/audio/speech"
# Answers of these routes say in JSON how much audio they hold (`duration_sec`).
JSON_AUDIO_ROUTES = (SYNTHESIZE_ROUTE, SPEECH_ROUTE, "/v1/audio/speech/batch")
JOBS_ROUTE = "/jobs"
# Requests that matched no rule (404, 405): one label, so scanners cannot grow the series count.
UNMATCHED = "unmatched"
MODEL_STATES = ("not_loaded", "loaded", "unavailable")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_AUDIO_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
# A bucket at 0: its count is the streams that never underran.
UNDERRUN_BUCKETS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The app's counters and histograms, in a registry of its own (never prometheus_client's global one)."""

    def __init__(self, app_state: AppState) -> None:
        self.app_state = app_state
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("barkserve_http_requests", "HTTP requests answered, by route rule, method and status.",
                                ("route", "method", "status"), registry=reg)  # fmt: skip
        self.latency = Histogram("barkserve_http_request_duration_seconds",
                                 "Time from request to the last byte of the answer, by route rule and method.",
                                 ("route", "method"), buckets=LATENCY_BUCKETS, registry=reg)  # fmt: skip
        self.audio = Counter("barkserve_audio_seconds", "Seconds of audio delivered by successful HTTP synthesis, "
                             "by route, and made by durable jobs (route /jobs, per finished chunk).",
                             ("route",), registry=reg)  # fmt: skip
        self.synthesis = Counter("barkserve_synthesis_seconds",
                                 "Wall-clock seconds of successful HTTP synthesis (and of job chunks, route /jobs); "
                                 "divided by barkserve_audio_seconds_total it is the real-time factor.",
                                 ("route",), registry=reg)  # fmt: skip
        self.key_requests = Counter("barkserve_key_requests", "HTTP requests made with each API key (its name), "
                                    "by status.", ("key", "status"), registry=reg)  # fmt: skip
        self.key_audio = Counter("barkserve_key_audio_seconds", "Seconds of audio made for each API key (its "
                                 "name): HTTP synthesis and durable jobs.", ("key",), registry=reg)  # fmt: skip
        # Called with (key id, audio seconds) when a request made with a key delivered audio (quotas).
        self.charge: Callable[[str, float], None] | None = None
        self.first_audio = Histogram("barkserve_time_to_first_audio_seconds",
                                     "Time from a /v1/audio/speech request to its first audio bytes.",
                                     buckets=FIRST_AUDIO_BUCKETS, registry=reg)  # fmt: skip
        # Underrun (server/streams.py, Playback): how long a listener playing a stream in real time from its
        # first audio would have waited for audio that had not been sent yet.
        self.underrun = Counter("barkserve_stream_underrun_seconds", "Seconds that real-time playback of "
                                "/v1/audio/speech streams, from each stream's first audio, would have stalled "
                                "waiting for audio not yet sent; summed over streams.", registry=reg)  # fmt: skip
        self.stream_underrun = Histogram("barkserve_stream_underrun_per_stream_seconds",
                                         "Underrun of each /v1/audio/speech stream that sent audio (the bucket "
                                         "le=0 counts the streams that never stalled).",
                                         buckets=UNDERRUN_BUCKETS, registry=reg)  # fmt: skip
        self.streams = Counter("barkserve_streams", "Streamed /v1/audio/speech answers that sent audio, "
                               "whether they ran to their end or not.", registry=reg)  # fmt: skip
        self.continuous = Counter("barkserve_streams_continuous", "Streams that ran to their end without an "
                                  "underrun; divided by barkserve_streams_total it is the stream continuity.",
                                  registry=reg)  # fmt: skip
        reg.register(StateCollector(app_state))

    def record(self, rec: RequestRecord) -> None:
        """Count one finished request."""
        self.requests.labels(rec.route, rec.method, str(rec.status)).inc()
        self.latency.labels(rec.route, rec.method).observe(rec.duration_s)
        if rec.audio_sec is not None and rec.status == 200:
            self.audio.labels(rec.route).inc(rec.audio_sec)
            self.synthesis.labels(rec.route).inc(rec.duration_s)
        if rec.first_audio_s is not None:
            self.first_audio.observe(rec.first_audio_s)
        if rec.key is not None:
            self.key_requests.labels(rec.key, str(rec.status)).inc()
            if rec.audio_sec is not None and rec.status == 200:
                self.key_audio.labels(rec.key).inc(rec.audio_sec)

    def record_stream(self, item: dict[str, Any]) -> None:
        """Count one ended stream from its progress record (server/streams.py); one that sent no audio is none."""
        if not item.get("chunks_done"):
            return
        underrun = float(item["underrun_sec"])
        self.streams.inc()
        self.underrun.inc(underrun)
        self.stream_underrun.observe(underrun)
        if item["stalls"] == 0 and item["error"] is None:
            self.continuous.inc()

    def record_job_audio(self, key: str | None, audio_sec: float, generation_sec: float) -> None:
        """Count one finished job chunk (`key`: the name of the job's API key, if it has one)."""
        self.audio.labels(JOBS_ROUTE).inc(audio_sec)
        self.synthesis.labels(JOBS_ROUTE).inc(generation_sec)
        if key is not None:
            self.key_audio.labels(key).inc(audio_sec)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class StateCollector:
    """Gauges read from the job store, the model registry and the engines when /metrics is scraped."""

    def __init__(self, app_state: AppState) -> None:
        self.app_state = app_state

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        models = GaugeMetricFamily("barkserve_model_state", "1 for each model's current load state.",
                                   labels=("model", "state"))  # fmt: skip
        for name, status in self.app_state.synthesizer.registry.status().items():
            for state in MODEL_STATES:
                models.add_metric((name, state), 1.0 if status["state"] == state else 0.0)
        yield models
        queued = GaugeMetricFamily("barkserve_engine_queued_requests", "Requests waiting for an engine slot.",
                                   labels=("model",))  # fmt: skip
        running = GaugeMetricFamily("barkserve_engine_running_rows", "Rows in the engine's semantic and coarse "
                                    "stages.", labels=("model",))  # fmt: skip
        # A copy of the synthesizer's engine table: it grows when a model is first used.
        for name, engine in self.app_state.synthesizer.engines().items():
            if isinstance(engine, QueuingEngine):  # the reference engine has no queue to show
                load = engine.load()
                queued.add_metric((name,), float(load.queued))
                running.add_metric((name,), float(load.running))
        yield queued
        yield running

    def _jobs(self) -> Iterator[Metric]:
        try:
            counts = self.app_state.jobs.count_by_state()
        except SQLAlchemyError as exc:  # a scrape still answers with the other metrics when the database is down
            log.warning("metrics: cannot count jobs: %s", exc)
            return
        jobs = GaugeMetricFamily("barkserve_jobs", "Durable jobs in the store, by state.", labels=("state",))
        for state, count in counts.items():
            jobs.add_metric((state,), float(count))
        yield jobs


def metrics() -> Metrics:
    """The current app's `Metrics`."""
    found: Metrics = current_app.extensions[EXTENSION]
    return found


def init_app(app: Flask, log_format: str) -> None:
    """Create the app's metrics and time, count and log every request."""
    app.extensions[EXTENSION] = found = Metrics(app.extensions[STATE_EXTENSION])
    app.before_request(_start)
    app.after_request(lambda response: _finish(response, found, log_format))


def _start() -> None:
    g.barkserve_started = time.perf_counter()


def _finish(response: Response, found: Metrics, log_format: str) -> Response:
    """Record a request once its answer is complete: now, or when a streamed answer ends."""
    started = g.get("barkserve_started", time.perf_counter())
    request_id = response.headers.get("X-Request-Id") or uuid.uuid4().hex
    response.headers["X-Request-Id"] = request_id
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    key = g.get("barkserve_key")  # the API key the request was made with (server/access.py)
    base = RequestRecord(request_id, route, request.method, response.status_code, 0.0, key=key.name if key else None)

    def done(first_audio_s: float | None = None, audio_sec: float | None = None) -> None:
        base.duration_s = time.perf_counter() - started
        base.first_audio_s, base.audio_sec = first_audio_s, audio_sec
        found.record(base)
        log_request(base, log_format)
        if key is not None and audio_sec and base.status == 200 and found.charge is not None:
            found.charge(key.id, audio_sec)

    if route == SPEECH_ROUTE and response.status_code == 200 and response.is_streamed:
        streams = found.app_state.streams

        def stream_done(first: float | None) -> None:
            item = streams.get(request_id) or {}
            done(first, item.get("audio_sec"))
            found.record_stream(item)

        response.response = _watched(response.response, started, stream_done)
        return response
    audio_sec = None
    if route in JSON_AUDIO_ROUTES and response.status_code == 200 and response.is_json:
        audio_sec = (response.get_json(silent=True) or {}).get("duration_sec")
    done(audio_sec=audio_sec)
    return response


def _watched(body: Iterable[Any], started: float, done: Callable[[float | None], None]) -> Iterator[Any]:
    """Pass a streamed body through, noting when its first bytes leave and calling `done` at its end."""
    first: float | None = None
    try:
        for data in body:
            if first is None and data:
                first = time.perf_counter() - started
            yield data
    finally:
        close: Any = getattr(body, "close", None)
        if close is not None:  # a client that went away: the stream stops generating now
            close()
        done(first)
