"""Timestamps of POST /v1/audio/speech: per chunk in server-sent events, or a JSON answer with the audio.

The streamed words and sentences are compared with the captions file of the same request, which the
finished audio is timed into at once (`captions_for`), not chunk by chunk.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from barkserve.testing.tiny import make_tiny_ctc
from support import FakeEngine

TEXT = "Hello there, my friend! [laughs] This text is long enough to need more than one chunk of speech. " + " ".join(
    f"Sentence number {i} goes on a little." for i in range(10)
)
SPEECH = {"model": "tts-1", "input": TEXT, "voice": "alloy", "seed": 3}


class SpeakingEngine(FakeEngine):
    """FakeEngine at about a speaking rate (0.1 s per text token), long enough for words to align."""

    samples_per_token = 2400


def events_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(b[len("data: ") :]) for b in data.decode().split("\n\n") if b]


def captions_file(client: Any, url: str) -> list[dict[str, Any]]:
    return json.loads(client.get(url).data)["cues"]


@pytest.fixture
def worded(make_app: Any, tmp_path: Path) -> Any:
    return make_app(engine_factory=SpeakingEngine, align_model=str(make_tiny_ctc(tmp_path / "ctc")))


def test_each_chunks_timestamps_come_before_its_audio_and_match_the_finished_captions(worded: Any) -> None:
    client = worded.test_client()
    body = {**SPEECH, "response_format": "pcm", "stream_format": "sse", "timestamps": True}
    got = client.post("/v1/audio/speech", json={**body, "captions": "json", "caption_words": True})
    events = events_of(got.data)
    chunks = int(got.headers["X-Chunks"])
    assert chunks > 2
    kinds = [e["type"] for e in events]
    assert kinds == ["speech.audio.timestamps", "speech.audio.delta"] * chunks + ["speech.audio.done"]
    assert [e["chunk"] for e in events if e["type"] == "speech.audio.timestamps"] == list(range(chunks))
    finished = captions_file(client, events[-1]["captions"]["url"])
    starts = [w["start"] for c in finished for w in c["words"]]
    # Each chunk's words are in hand before its audio: when a delta arrives, every word that starts
    # within the audio received so far has been received.
    words: list[dict[str, Any]] = []
    sentences: list[dict[str, Any]] = []
    samples = 0
    for event in events[:-1]:
        if event["type"] == "speech.audio.timestamps":
            words += event["words"]
            sentences += event["sentences"]
        else:
            samples += len(base64.b64decode(event["audio"])) // 2
            assert len(words) >= sum(start < samples / 24_000 - 1e-3 for start in starts) > 0  # times are in ms
    assert events[-1]["timestamps"]["warnings"] == [] and events[-1]["captions"]["warnings"] == []
    assert [(s["text"], s["start"], s["end"]) for s in sentences] == [
        (c["text"], c["start"], c["end"]) for c in finished
    ]
    assert words == [w for c in finished for w in c["words"]]
    assert len(words) == len(" ".join(c["text"] for c in finished).split())
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times) and sentences[-1]["end"] == pytest.approx(samples / 24_000, abs=1e-3)


def test_timestamps_without_streaming_answer_json_with_the_audio(worded: Any) -> None:
    client = worded.test_client()
    got = client.post("/v1/audio/speech", json={**SPEECH, "response_format": "wav", "timestamps": True})
    assert got.status_code == 200 and got.is_json
    answer = got.get_json()
    audio, rate = sf.read(io.BytesIO(base64.b64decode(answer["audio"])))
    assert rate == 24_000 and answer["response_format"] == "wav" and answer["warnings"] == []
    assert answer["duration_sec"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert answer["sentences"][0]["start"] == 0.0
    assert answer["sentences"][-1]["end"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert " ".join(s["text"] for s in answer["sentences"]).startswith("Hello there, my friend! This text")
    assert [w["text"] for w in answer["words"]] == " ".join(s["text"] for s in answer["sentences"]).split()
    assert answer["usage"]["total_tokens"] == answer["usage"]["input_tokens"] + answer["usage"]["output_tokens"]
    # The same request streamed times the same words.
    sse = {**SPEECH, "response_format": "wav", "stream_format": "sse", "timestamps": True}
    streamed = events_of(client.post("/v1/audio/speech", json=sse).data)
    assert [w for e in streamed if e["type"] == "speech.audio.timestamps" for w in e["words"]] == answer["words"]


def test_without_an_aligner_sentences_are_timed_and_a_warning_says_why(make_app: Any) -> None:
    client = make_app(engine_factory=FakeEngine, align_model="").test_client()
    answer = client.post("/v1/audio/speech", json={**SPEECH, "response_format": "pcm", "timestamps": True}).get_json()
    assert answer["words"] == [] and len(answer["sentences"]) > 3
    (warning,) = answer["warnings"]
    assert "no align_model" in warning
    pcm = np.frombuffer(base64.b64decode(answer["audio"]), "<i2")
    assert answer["sentences"][-1]["end"] == pytest.approx(len(pcm) / 24_000, abs=1e-3)


@pytest.mark.parametrize("value", ["yes", 1, None, "words"])
def test_a_bad_timestamps_value_is_a_400_before_any_generation(make_app: Any, value: object) -> None:
    app = make_app(engine_factory=FakeEngine)
    got = app.test_client().post("/v1/audio/speech", json={**SPEECH, "timestamps": value})
    assert got.status_code == 400 and "timestamps must be true or false" in got.get_json()["error"]["message"]
    synth = app.extensions["barkserve"].synthesizer
    assert synth.engine(synth.config.default_model).requests == []
