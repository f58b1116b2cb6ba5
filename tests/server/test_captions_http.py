"""The captions extension of POST /synthesize and POST /v1/audio/speech: files beside the audio, read
back with the `srt` and `webvtt-py` packages; bad values are a 400 before any generation."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

from barkserve.testing.tiny import make_tiny_ctc
from support import FakeEngine

TEXT = (
    "Hello  there, my friend! [laughs] This text is long enough to need more than one chunk of speech. "
    "WOMAN: It keeps its case, its cafe\u0301 and its co\u00adoperation. "
    + " ".join(f"Sentence number {i} goes on a little." for i in range(14))
)
SEED_KEYS = ("message", "filename", "text", "processing_time_sec", "processing_time_min")


def without_cues(text: str) -> str:
    text = re.sub(r"\[[^\[\]]*\]|♪[^♪]*♪", " ", text)
    return " ".join(re.sub(r"(?<!\S)(?:MAN|WOMAN):(?!\S)", " ", text).split())


def cues_from(fmt: str, data: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue, parsed by the format's own library (json: the documented shape)."""
    if fmt == "srt":
        return [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(data)]
    if fmt == "vtt":

        def seconds(stamp: str) -> float:
            h, m, s = stamp.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)

        return [
            (seconds(c.start), seconds(c.end), html.unescape(c.text)) for c in webvtt.from_buffer(io.StringIO(data))
        ]
    return [(c["start"], c["end"], c["text"]) for c in json.loads(data)["cues"]]


def assert_covering(cues: list[tuple[float, float, str]], duration: float, text: str) -> None:
    assert " ".join(c[2] for c in cues) == without_cues(text)
    assert cues[0][0] == 0.0 and cues[-1][1] == pytest.approx(duration, abs=0.001)
    for a, b in pairwise(cues):
        assert a[0] <= a[1] == b[0] <= b[1]


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app(engine_factory=FakeEngine)


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json"])
def test_synthesize_writes_captions_beside_the_audio(app: Any, fmt: str) -> None:
    client = app.test_client()
    answer = client.post("/synthesize", json={"text": TEXT, "captions": fmt, "seed": 1}).get_json()
    assert answer["chunks"] > 1 and all(k in answer for k in SEED_KEYS)
    assert answer["text"] == TEXT  # the seed contract's keys keep their meaning
    captions = answer["captions"]
    assert captions["format"] == fmt and captions["words"] is False and captions["warnings"] == []
    assert captions["filename"] == Path(answer["filename"]).with_suffix(f".{fmt}").name
    got = client.get(captions["url"])
    assert got.status_code == 200
    assert got.mimetype == {"srt": "application/x-subrip", "vtt": "text/vtt", "json": "application/json"}[fmt]
    cues = cues_from(fmt, got.get_data(as_text=True))
    assert len(cues) == captions["cues"] > answer["chunks"]
    audio, rate = sf.read(io.BytesIO(client.get(answer["url"]).data))
    assert_covering(cues, len(audio) / rate, TEXT)
    assert "cafe\u0301" in cues_from(fmt, got.get_data(as_text=True))[2][2]  # the original form, not NFC


def test_without_captions_the_answer_is_as_before(app: Any) -> None:
    answer = app.test_client().post("/synthesize", json={"text": "Hello there.", "seed": 1}).get_json()
    assert "captions" not in answer
    assert [p.suffix for p in Path(app.extensions["barkserve"].config.output_dir).iterdir()] == [".wav"]


class SpeakingEngine(FakeEngine):
    """FakeEngine at about a speaking rate: 0.1 s per text token (FakeEngine's 10 ms is too fast to align)."""

    samples_per_token = 2400


def test_caption_words_align_with_the_configured_checkpoint(make_app: Any, tmp_path: Path) -> None:
    app = make_app(engine_factory=SpeakingEngine, align_model=str(make_tiny_ctc(tmp_path / "ctc")))
    client = app.test_client()
    answer = client.post("/synthesize", json={"text": TEXT, "captions": "json", "caption_words": True}).get_json()
    assert answer["captions"]["words"] is True and answer["captions"]["warnings"] == []
    cues = json.loads(client.get(answer["captions"]["url"]).data)["cues"]
    assert " ".join(c["text"] for c in cues) == without_cues(TEXT)
    for cue in cues:
        assert [w["text"] for w in cue["words"]] == cue["text"].split()
        times = [t for w in cue["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and cue["start"] <= times[0] and times[-1] <= cue["end"]


def test_audio_too_short_for_its_words_keeps_sentence_captions_with_a_warning(make_app: Any, tmp_path: Path) -> None:
    app = make_app(engine_factory=FakeEngine, align_model=str(make_tiny_ctc(tmp_path / "ctc")))
    client = app.test_client()
    answer = client.post("/synthesize", json={"text": TEXT, "captions": "json", "caption_words": True}).get_json()
    warnings = answer["captions"]["warnings"]  # one per window: words are timed chunk by chunk
    assert warnings and all("cannot hold" in w and "sentence timing" in w for w in warnings)
    cues = json.loads(client.get(answer["captions"]["url"]).data)["cues"]
    assert all(c["words"] == [] for c in cues)
    assert " ".join(c["text"] for c in cues) == without_cues(TEXT)


def test_caption_words_without_an_aligner_fail_before_any_generation(make_app: Any, tmp_path: Path) -> None:
    app = make_app(engine_factory=FakeEngine, align_model=str(tmp_path / "no-such-ctc"))
    client = app.test_client()
    got = client.post("/synthesize", json={"text": "Hello.", "captions": "srt", "caption_words": True})
    assert got.status_code == 503 and got.get_json()["error"]["code"] == "aligner_unavailable"
    assert "align_model" in got.get_json()["error"]["message"]
    assert not app.extensions["barkserve"].config.output_dir.exists() or not any(
        app.extensions["barkserve"].config.output_dir.iterdir()
    )
    speech = {"model": "tts-1", "input": "Hello.", "voice": "alloy", "captions": "vtt", "caption_words": True}
    assert client.post("/v1/audio/speech", json=speech).status_code == 503
    # Word captions off on the server: a 400 that says so.
    off = make_app(engine_factory=FakeEngine, align_model="").test_client()
    got = off.post("/synthesize", json={"text": "Hello.", "captions": "srt", "caption_words": True})
    assert got.status_code == 400 and "no align_model" in got.get_json()["error"]["message"]


BAD = [
    ({"captions": "SRT"}, "captions must be one of ['none', 'srt', 'vtt', 'json']; got 'SRT'"),
    ({"captions": "txt"}, "captions must be one of"),
    ({"captions": None}, "captions must be one of"),
    ({"captions": 1}, "captions must be one of"),
    ({"captions": "srt", "caption_words": "yes"}, "caption_words must be true or false; got 'yes'"),
    ({"captions": "srt", "caption_words": 1}, "caption_words must be true or false"),
    ({"caption_words": True}, "caption_words needs captions"),
    ({"captions": "none", "caption_words": True}, "caption_words needs captions"),
    ({"caption": "srt"}, "unknown field(s) ['caption']"),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_bad_caption_fields_are_a_clear_400(app: Any, fields: dict[str, Any], message: str) -> None:
    client = app.test_client()
    for path, body in (
        ("/synthesize", {"text": "Hello."}),
        ("/v1/audio/speech", {"model": "tts-1", "input": "Hello.", "voice": "alloy"}),
    ):
        got = client.post(path, json={**body, **fields})
        assert got.status_code == 400, path
        assert got.get_json()["error"]["code"] == "invalid_request" and message in got.get_json()["error"]["message"]
    synth = app.extensions["barkserve"].synthesizer
    assert synth.engine(synth.config.default_model).requests == []  # nothing was generated


def test_jobs_do_not_take_the_caption_fields(app: Any) -> None:
    got = app.test_client().post("/jobs", json={"text": "Hello.", "captions": "srt"})
    assert got.status_code == 400 and "captions" in got.get_json()["error"]["message"]


SPEECH = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "wav"}


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json"])
def test_speech_streams_audio_and_names_its_captions_in_a_header(app: Any, fmt: str) -> None:
    client = app.test_client()
    got = client.post("/v1/audio/speech", json={**SPEECH, "captions": fmt})
    assert got.status_code == 200 and got.mimetype == "audio/wav"
    url = got.headers["X-Captions-Url"]
    audio, rate = sf.read(io.BytesIO(got.data))  # reading the stream to its end writes the captions
    cues = cues_from(fmt, client.get(url).get_data(as_text=True))
    assert len(cues) > int(got.headers["X-Chunks"]) > 1
    assert_covering(cues, len(audio) / rate, TEXT)


def test_speech_events_end_with_the_captions(app: Any) -> None:
    client = app.test_client()
    got = client.post(
        "/v1/audio/speech", json={**SPEECH, "response_format": "pcm", "stream_format": "sse", "captions": "srt"}
    )
    blocks = [json.loads(b[len("data: ") :]) for b in got.get_data(as_text=True).split("\n\n") if b]
    done = blocks[-1]
    assert done["type"] == "speech.audio.done"
    assert done["captions"]["url"] == got.headers["X-Captions-Url"] and done["captions"]["warnings"] == []
    pcm = b"".join(base64.b64decode(b["audio"]) for b in blocks[:-1])
    samples = np.frombuffer(pcm, dtype="<i2")
    cues = cues_from("srt", client.get(done["captions"]["url"]).get_data(as_text=True))
    assert_covering(cues, len(samples) / 24_000, TEXT)


def test_speech_without_captions_sends_no_caption_header(app: Any) -> None:
    got = app.test_client().post("/v1/audio/speech", json={**SPEECH, "input": "Hello there."})
    assert got.status_code == 200 and "X-Captions-Url" not in got.headers and len(got.data) > 44
    assert not any(Path(app.extensions["barkserve"].config.output_dir).glob("*"))


def test_an_aligner_that_breaks_keeps_sentence_captions_on_every_path(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One policy (captions.timed_words): before, a job kept sentence timing with a warning while
    # /synthesize answered the aligner's exception as a 500.
    from barkserve.captions import align

    app = make_app(engine_factory=SpeakingEngine, align_model=str(make_tiny_ctc(tmp_path / "ctc")))
    client = app.test_client()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the aligner's model broke")

    monkeypatch.setattr(align, "_align_window", broken)
    answer = client.post("/synthesize", json={"text": TEXT, "captions": "json", "caption_words": True})
    assert answer.status_code == 200
    (warning,) = answer.get_json()["captions"]["warnings"]
    assert "RuntimeError" in warning and "sentence timing" in warning
    job = client.post("/jobs", json={"text": TEXT, "caption_words": True}).get_json()
    runner = app.extensions["barkserve"].runner
    while runner.run_once():
        pass
    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded" and any("sentence timing" in w for w in done["warnings"])
