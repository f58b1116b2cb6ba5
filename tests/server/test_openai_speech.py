"""POST /v1/audio/speech in-process: Bark's options, server-sent events, the voice list, cancelled work."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import numpy as np
import pytest

from barkserve.errors import GenerationCancelled
from support import FakeEngine

LONG = " ".join(f"This is sentence number {i} of a text long enough to need several chunks." for i in range(12))
SPEECH = {"model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}
HELD_SEED = 1_000  # HoldingEngine holds the chunks of this seed from its third chunk on


class HoldingTask:
    """An engine task that is finished at once, or held until cancelled."""

    def __init__(self, out: Any, held: bool) -> None:
        self.out, self.held, self.cancelled = out, held, False
        self._done = threading.Event()
        if not held:
            self._done.set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self.cancelled = True

    def wait(self, timeout: float | None = None) -> Any:
        if not self._done.wait(30):  # a guard against a hung test, not a speed assertion
            raise GenerationCancelled("held")
        return self.out


class HoldingEngine(FakeEngine):
    """A batching FakeEngine (`submit`) that holds the chunks 2, 3, ... of requests seeded HELD_SEED."""

    def __init__(self, loaded: Any) -> None:
        super().__init__(loaded)
        self.tasks: list[HoldingTask] = []

    def submit(self, request: Any) -> HoldingTask:
        held = request.options.seed >= HELD_SEED + 2 and request.options.seed < HELD_SEED + 100
        task = HoldingTask(self.generate(request), held)
        self.tasks.append(task)
        return task


def events_of(data: bytes) -> list[dict[str, Any]]:
    """The JSON of each `data:` event of a text/event-stream body."""
    blocks = [b for b in data.decode().split("\n\n") if b]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks)
    return [json.loads(b[len("data: ") :]) for b in blocks]


@pytest.fixture
def client(make_app: Any) -> Any:
    return make_app(engine_factory=FakeEngine).test_client()


@pytest.mark.parametrize("fmt", ["pcm", "mp3", "wav", "opus", "flac"])
def test_events_carry_the_same_bytes_as_the_audio_stream(client: Any, fmt: str) -> None:
    body = {**SPEECH, "response_format": fmt, "seed": 7}
    plain = client.post("/v1/audio/speech", json=body)
    sse = client.post("/v1/audio/speech", json={**body, "stream_format": "sse"})
    assert sse.status_code == 200 and sse.mimetype == "text/event-stream"
    events = events_of(sse.data)
    assert [e["type"] for e in events] == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"]
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == plain.data
    usage = events[-1]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert sse.headers["X-Seed"] == plain.headers["X-Seed"] == "7"


def test_usage_counts_text_tokens_in_and_codec_frames_out(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    response = app.test_client().post("/v1/audio/speech", json={**SPEECH, "stream_format": "sse", "seed": 3})
    usage = events_of(response.data)[-1]["usage"]
    engine = app.extensions["barkserve"].synthesizer.engine(app.extensions["barkserve"].config.default_model)
    assert usage["input_tokens"] == sum(len(r.text_ids) for r in engine.requests)
    # FakeEngine makes 240 samples a token at 24 kHz: 75 codec frames a second is 0.75 of a frame a token.
    assert usage["output_tokens"] == sum(round(len(r.text_ids) * 240 * 75 / 24_000) for r in engine.requests)


@pytest.mark.parametrize("value", ["", "SSE", "events", 1, None])
def test_other_stream_formats_are_400(client: Any, value: object) -> None:
    response = client.post("/v1/audio/speech", json={**SPEECH, "stream_format": value})
    assert response.status_code == 400 and "stream_format must be one of ['audio', 'sse']" in response.text


def test_bark_options_are_extra_fields(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    options = {"seed": 11, "text_temp": 0.0, "waveform_temp": 0.3, "min_eos_p": 0.2, "max_duration_sec": 2.0,
               "sentence_pause_sec": 0.5, "carry_history": True}  # fmt: skip
    response = app.test_client().post("/v1/audio/speech", json={**SPEECH, **options})
    assert response.status_code == 200 and response.headers["X-Seed"] == "11"
    engine = app.extensions["barkserve"].synthesizer.engine(app.extensions["barkserve"].config.default_model)
    first = engine.requests[0].options
    assert (first.text_temp, first.waveform_temp, first.min_eos_p, first.max_duration_sec) == (0.0, 0.3, 0.2, 2.0)
    assert (first.sentence_pause_sec, first.carry_history, first.seed) == (0.5, True, 11)
    assert [r.options.seed for r in engine.requests] == list(range(11, 11 + len(engine.requests)))


def test_the_pause_default_stays_the_routes_own(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    assert app.test_client().post("/v1/audio/speech", json=SPEECH).status_code == 200
    engine = app.extensions["barkserve"].synthesizer.engine(app.extensions["barkserve"].config.default_model)
    assert engine.requests[0].options.sentence_pause_sec == 0.2


@pytest.mark.parametrize(
    "options",
    [{"seed": -1}, {"seed": True}, {"text_temp": 9}, {"waveform_temp": "hot"}, {"min_eos_p": 0},
     {"max_duration_sec": 99}, {"sentence_pause_sec": -1}, {"carry_history": "yes"}, {"qc": "strict"}],
)  # fmt: skip
def test_bad_options_are_the_same_400_as_synthesize(client: Any, options: dict) -> None:
    speech = client.post("/v1/audio/speech", json={**SPEECH, **options})
    synthesize = client.post("/synthesize", json={"text": "Hi.", **options})
    assert speech.status_code == synthesize.status_code == 400
    assert speech.get_json()["error"] == synthesize.get_json()["error"]


def test_unknown_fields_stay_400(client: Any) -> None:
    response = client.post("/v1/audio/speech", json={**SPEECH, "temperature": 0.5})
    assert response.status_code == 400 and "unknown field(s) ['temperature']" in response.text


def test_voices_lists_what_voice_takes(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine, openai_voices="verse=v2/de_speaker_1,ghost=no_such_voice")
    voices_dir = app.extensions["barkserve"].config.voices_dir
    voices_dir.mkdir(parents=True, exist_ok=True)
    registry = app.extensions["barkserve"].synthesizer.registry
    preset = registry.voices(registry.resolve(None)).load("v2/en_speaker_1")
    np.savez(voices_dir / "mine.npz", **preset.arrays())
    client = app.test_client()
    listed = client.get("/v1/audio/voices").get_json()["voices"]
    by_id = {v["id"]: v for v in listed}
    alloy = {"id": "alloy", "name": "alloy", "preset": "v2/en_speaker_6", "kind": "openai", "language": "en"}
    assert by_id["alloy"] == alloy
    assert by_id["verse"]["preset"] == "v2/de_speaker_1" and by_id["verse"]["language"] == "de"
    assert "ghost" not in by_id
    assert by_id["v2/en_speaker_3"]["kind"] == "preset" and by_id["v2/zh_speaker_3"]["language"] == "zh"
    # A custom voice without a record (an operator's file): its language is not known.
    assert by_id["mine"]["kind"] == "custom" and by_id["mine"]["language"] is None
    # Every listed voice is accepted as `voice`.
    for voice in ("alloy", "verse", "v2/en_speaker_3", "mine"):
        speech = {**SPEECH, "input": "Hi.", "voice": voice}
        assert client.post("/v1/audio/speech", json=speech).status_code == 200, voice


def test_a_client_leaving_cancels_its_chunks_in_the_engine(make_app: Any, caplog: Any) -> None:
    app = make_app(engine_factory=HoldingEngine)
    client = app.test_client()
    engine = app.extensions["barkserve"].synthesizer.engine(app.extensions["barkserve"].config.default_model)
    other_started, left = threading.Event(), threading.Event()
    kept: dict[str, Any] = {}

    def other_stream() -> None:  # its own thread, as under a WSGI server (Flask's contexts are per thread)
        response = client.post("/v1/audio/speech", json={**SPEECH, "seed": 5}, buffered=False)
        body = iter(response.response)
        kept["first"] = next(body)
        other_started.set()
        left.wait(30)
        kept["rest"], kept["id"] = b"".join(body), response.headers["X-Request-Id"]

    other = threading.Thread(target=other_stream)
    other.start()
    leaving = client.post("/v1/audio/speech", json={**SPEECH, "seed": HELD_SEED}, buffered=False)
    total = int(leaving.headers["X-Chunks"])
    body = iter(leaving.response)
    assert next(body) and next(body)  # chunks 0 and 1; chunks 2 and 3 are in the engine, held there
    held = [t for t in engine.tasks if t.held]
    assert len(held) == 2 and not any(t.cancelled for t in held)
    assert other_started.wait(30)
    with caplog.at_level("INFO", logger="barkserve"):
        leaving.close()  # what the WSGI server does when the client disconnects
    left.set()
    assert all(t.cancelled for t in held)
    record = client.get(f"/v1/audio/speech/{leaving.headers['X-Request-Id']}").get_json()
    assert record["error"] == "client disconnected"
    assert (record["chunks_done"], record["chunks_started"], record["chunks_cancelled"]) == (2, 4, total - 2)
    assert f"stream {leaving.headers['X-Request-Id']}: client disconnected" in caplog.text
    # The other stream goes on to its end, and none of its work was cancelled.
    other.join(30)
    finished = client.get(f"/v1/audio/speech/{kept['id']}").get_json()
    assert kept["first"] and kept["rest"] and finished["error"] is None
    assert finished["chunks_done"] == finished["chunks_total"] == finished["chunks_started"]
    assert not any(t.cancelled for t in engine.tasks if not t.held)


@pytest.mark.parametrize(
    ("route", "field", "setting", "limit"),
    [
        ("/synthesize", "text", "max_text_chars", 300),
        ("/v1/audio/speech", "input", "openai_max_input_chars", 200),
        ("/jobs", "text", "max_job_chars", 400),
    ],
)
def test_each_edge_checks_its_own_text_limit(make_app: Any, route: str, field: str, setting: str, limit: int) -> None:
    # Decided once, at the edges: each route names the setting that refused the text (the OpenAI route
    # said `invalid_request` where every other limit says `text_too_long`).
    app = make_app(FakeEngine, max_text_chars=300, openai_max_input_chars=200, max_job_chars=400)
    body = {"model": "tts-1", "voice": "alloy"} if field == "input" else {}
    answer = app.test_client().post(route, json={**body, field: "x" * (limit + 1)})
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error["code"] == "text_too_long" and setting in error["message"]
    assert app.test_client().post(route, json={**body, field: "x " * (limit // 2)}).status_code in (200, 202)
