"""POST /v1/audio/speech/batch: items checked together before any is generated, generated together,
answered one by one."""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from barkserve.errors import GenerationCancelled
from support import FakeEngine

ITEMS = [
    {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav", "seed": 1},
    {"model": "tts-1", "input": "Guten Tag.", "voice": "v2/de_speaker_1", "response_format": "flac", "speed": 2.0},
    {"model": "tts-1", "input": "Short one.", "voice": "echo", "response_format": "pcm", "timestamps": True},
]
SILENT_SEED = 13  # SilentEngine makes no sound for this seed


class GatedTask:
    """A task that finishes only once every item's chunk has reached the engine."""

    def __init__(self, engine: GatedEngine, out: Any) -> None:
        self.engine, self.out, self.finished = engine, out, False

    def cancel(self) -> None:
        """Nothing to cancel."""

    def wait(self, timeout: float | None = None) -> Any:
        if not self.engine.all_in.wait(60):  # a guard against a hung test, not a speed assertion
            raise GenerationCancelled("the other items never reached the engine")
        self.finished = True
        return self.out


class GatedEngine(FakeEngine):
    """A batching FakeEngine (`submit`) that holds every chunk until `expected` chunks were submitted:
    items sent one after another would wait for each other forever (and fail at the guard)."""

    expected = 3

    def __init__(self, loaded: Any) -> None:
        super().__init__(loaded)
        self.all_in = threading.Event()
        self._lock = threading.Lock()

    def submit(self, request: Any) -> GatedTask:
        with self._lock:
            task = GatedTask(self, self.generate(request))
            if len(self.requests) >= self.expected:
                self.all_in.set()
        return task


class SilentEngine(FakeEngine):
    def generate(self, request: Any) -> Any:
        out = super().generate(request)
        if request.options.seed == SILENT_SEED:
            return type(out)(audio=np.zeros(0, np.float32), sample_rate=out.sample_rate)
        return out


def engine_of(app: Any) -> Any:
    synth = app.extensions["barkserve"].synthesizer
    return synth.engine(synth.config.default_model)


def test_items_run_together_and_are_answered_one_by_one(make_app: Any) -> None:
    app = make_app(engine_factory=GatedEngine, align_model="")
    got = app.test_client().post("/v1/audio/speech/batch", json={"items": ITEMS})
    assert got.status_code == 200, got.get_json()
    answer = got.get_json()
    assert answer["object"] == "list" and answer["failed"] == 0
    data = answer["data"]
    assert [d["index"] for d in data] == [0, 1, 2] and [d["response_format"] for d in data] == ["wav", "flac", "pcm"]
    audio = [base64.b64decode(d["audio"]) for d in data]
    wav, rate = sf.read(io.BytesIO(audio[0]))
    flac, _ = sf.read(io.BytesIO(audio[1]))
    pcm = np.frombuffer(audio[2], "<i2")
    assert rate == 24_000 and data[0]["duration_sec"] == pytest.approx(len(wav) / rate, abs=1e-3)
    assert data[1]["duration_sec"] == pytest.approx(len(flac) / rate, abs=1e-3)
    assert data[2]["duration_sec"] == pytest.approx(len(pcm) / rate, abs=1e-3)
    # Each item with its own voice and options.
    requests = engine_of(app).requests
    assert sorted(r.voice.name for r in requests) == ["v2/de_speaker_1", "v2/en_speaker_0", "v2/en_speaker_6"]
    assert data[0]["seed"] == 1 and "words" not in data[0]
    assert data[2]["sentences"][0]["text"] == "Short one." and data[2]["words"] == []
    assert "no align_model" in data[2]["warnings"][0]
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert answer["usage"][key] == sum(d["usage"][key] for d in data) > 0
    assert answer["duration_sec"] == pytest.approx(sum(d["duration_sec"] for d in data), abs=3e-3)


def test_one_item_failing_keeps_the_others(make_app: Any) -> None:
    app = make_app(engine_factory=SilentEngine)
    items = [ITEMS[0], {**ITEMS[0], "seed": SILENT_SEED}, ITEMS[2]]
    answer = app.test_client().post("/v1/audio/speech/batch", json={"items": items}).get_json()
    assert answer["failed"] == 1 and "audio" in answer["data"][0] and "audio" in answer["data"][2]
    assert answer["data"][1] == {"index": 1, "error": answer["data"][1]["error"]}
    assert answer["data"][1]["error"]["code"] == "no_speech"


ITEM = {"model": "tts-1", "input": "Hi.", "voice": "alloy"}
BAD = [
    ({"items": []}, "items must be a list of 1 to 32 speech requests; got a list of 0"),
    ({"items": [ITEM] * 33}, "got a list of 33"),
    ({"items": ITEM}, "items must be a list"),
    ({}, "items must be a list"),
    ({"items": [ITEM], "model": "tts-1"}, "unknown field(s) ['model']"),
    ({"items": [ITEM, "Hi."]}, "items[1] must be a JSON object"),
    ({"items": [ITEM, {**ITEM, "voice": "nobody"}]}, "items[1]: unknown voice 'nobody'"),
    ({"items": [ITEM, ITEM, {**ITEM, "input": "x" * 4097}]}, "items[2]: input is 4097 characters"),
    ({"items": [{**ITEM, "input": "x" * 4000}] * 9}, "36000 characters together"),
    ({"items": [ITEM, {**ITEM, "stream_format": "sse"}]}, "items[1]: unknown field(s) ['stream_format']"),
    ({"items": [ITEM, {**ITEM, "captions": "srt"}]}, "items[1]: unknown field(s) ['captions']"),
    ({"items": [ITEM, {**ITEM, "response_format": "ogg"}]}, "items[1]: response_format must be one of"),
    ({"items": [ITEM, {**ITEM, "timestamps": "yes"}]}, "items[1]: timestamps must be true or false"),
    ({"items": [{**ITEM, "speed": 9}]}, "items[0]: speed"),
    ({"items": [ITEM, {"input": "Hi.", "voice": "alloy"}]}, "items[1]: field 'model' is required"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_a_rejected_batch_generates_nothing(make_app: Any, body: dict, message: str) -> None:
    app = make_app(engine_factory=FakeEngine)
    got = app.test_client().post("/v1/audio/speech/batch", json=body)
    assert got.status_code == 400, got.get_json()
    assert message in got.get_json()["error"]["message"]
    assert engine_of(app).requests == []  # not one item was generated
