"""Markup over HTTP: the dry runs, pauses in the audio and captions, SSML voices and rates, normalization
with captions in the original text, and the per-key lexicon (GET/PUT/DELETE /lexicon, its scope)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from support import FakeEngine

SPEECH = {"model": "tts-1", "voice": "alloy", "response_format": "pcm"}
PLAN_KEYS = {
    "model", "voice", "seed", "ssml", "normalize", "text", "spoken_text", "chunks", "pauses", "substitutions",
    "estimated_seconds",
}  # fmt: skip


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app(engine_factory=FakeEngine)


def engine_of(app: Any) -> FakeEngine:
    synth = app.extensions["barkserve"].synthesizer
    engine: FakeEngine = next(iter(synth.engines().values()))
    return engine


def given_to_engine(app: Any, *texts: str) -> bool:
    """Whether the engine was given exactly these texts' tokens, in order."""
    engine = engine_of(app)
    return [r.text_ids.tolist() for r in engine.requests] == [engine.tokenize(t).tolist() for t in texts]


def test_speech_plan_shows_chunks_pauses_and_substitutions(app: Any) -> None:
    text = "Hello [pause:1.5s] world, I paid $5. Dr. Who"
    got = app.test_client().post("/v1/audio/speech/plan", json={**SPEECH, "input": text})
    assert got.status_code == 200, got.get_json()
    plan = got.get_json()
    assert set(plan) == PLAN_KEYS
    assert plan["text"] == text and plan["ssml"] is False and plan["normalize"] is True
    assert [c["said"] for c in plan["chunks"]] == ["Hello", "world, I paid five US dollars. Doctor Who"]
    assert plan["pauses"] == [{"after_chunk": 0, "seconds": 1.5}]
    assert plan["chunks"][1]["pause_after_sec"] == 0.0
    assert [(s["original"], s["source"]) for s in plan["substitutions"]] == [
        ("Dr.", "normalize:abbreviation"),
        ("$5", "normalize:currency"),
    ]
    assert engine_of(app).requests == []  # planned, nothing generated


def test_synthesize_dry_run_answers_the_plan_and_writes_nothing(app: Any) -> None:
    client = app.test_client()
    body = {"text": "<speak>Hi <break time='2s'/> there</speak>", "seed": 3}
    plan = client.post("/synthesize?dry_run=1", json=body).get_json()
    assert set(plan) == PLAN_KEYS and plan["seed"] == 3 and plan["ssml"] is True
    assert [c["said"] for c in plan["chunks"]] == ["Hi", "there"] and plan["pauses"][0]["seconds"] == 2.0
    assert not any(Path(app.extensions["barkserve"].config.output_dir).glob("*"))
    assert engine_of(app).requests == []
    bad = client.post("/synthesize?dry_run=maybe", json=body)
    assert bad.status_code == 400 and "dry_run" in bad.get_json()["error"]["message"]
    normal = client.post("/synthesize?dry_run=0", json={"text": "Hello there.", "seed": 1}).get_json()
    assert list(normal) == [
        "message", "filename", "text", "processing_time_sec", "processing_time_min", "url", "duration_sec",
        "sample_rate", "voice_preset", "model", "seed", "format", "chunks",
    ]  # fmt: skip
    assert normal["text"] == "Hello there."


def duration_of(client: Any, body: dict[str, Any]) -> float:
    answer = client.post("/synthesize", json={"seed": 1, "sentence_pause_sec": 0, **body}).get_json()
    audio, rate = sf.read(io.BytesIO(client.get(answer["url"]).data))
    return float(len(audio) / rate)


@pytest.mark.parametrize(
    ("marked", "seconds"),
    [
        ("One. [pause:2s] Two.", 2.0),
        ("One. [pause] Two.", 0.5),
        ("<speak>One. <break time='750ms'/> Two.</speak>", 0.75),
        ("<speak>One. <break strength='strong'/> Two.</speak>", 1.0),
        ("[pause:1s] One. Two. [pause:1s]", 2.0),  # before the first words and after the last
    ],
)
def test_pauses_are_silence_of_their_length_in_the_audio(app: Any, marked: str, seconds: float) -> None:
    client = app.test_client()
    plain = duration_of(client, {"text": "One. Two.", "sentence_pause_sec": 0})
    assert duration_of(client, {"text": marked}) - plain == pytest.approx(seconds, abs=1e-3)


def test_a_pause_shifts_the_captions_and_they_keep_the_written_text(app: Any) -> None:
    client = app.test_client()
    body = {"text": "I paid $5. [pause:3s] On 2024-03-05.", "seed": 1, "captions": "json"}
    answer = client.post("/synthesize", json=body).get_json()
    cues = json.loads(client.get(answer["captions"]["url"]).data)["cues"]
    assert [c["text"] for c in cues] == ["I paid $5.", "On 2024-03-05."]  # as written, the tag not shown
    assert given_to_engine(app, "I paid five US dollars.", "On March fifth, twenty twenty-four.")
    first_speech = len(engine_of(app).requests[0].text_ids) * FakeEngine.samples_per_token / 24_000
    assert cues[1]["start"] == pytest.approx(first_speech + 3.0, abs=2e-3)  # the pause before the second cue


def test_normalize_false_gives_bark_the_text_as_written(app: Any) -> None:
    app.test_client().post("/synthesize", json={"text": "I paid $5.", "seed": 1, "normalize": False})
    assert given_to_engine(app, "I paid $5.")


def test_ssml_voice_and_rate_reach_the_engine_and_the_audio(app: Any) -> None:
    client = app.test_client()
    ssml = (
        "<speak>Hello there. <voice name='v2/de_speaker_1'>Guten Tag.</voice>"
        "<prosody rate='200%'>Fast words here.</prosody></speak>"
    )
    answer = client.post("/synthesize", json={"text": ssml, "seed": 1, "sentence_pause_sec": 0}).get_json()
    assert answer["chunks"] == 3 and answer["text"] == "Hello there. Guten Tag. Fast words here."
    voices = app.extensions["barkserve"].synthesizer.registry.voices(answer["model"])
    requests = engine_of(app).requests
    german, default = voices.load("v2/de_speaker_1"), voices.load("v2/en_speaker_6")
    assert np.array_equal(requests[1].voice.semantic, german.semantic)
    assert np.array_equal(requests[0].voice.semantic, default.semantic)
    assert np.array_equal(requests[2].voice.semantic, default.semantic)
    made = [len(r.text_ids) * FakeEngine.samples_per_token for r in requests]
    audio, rate = sf.read(io.BytesIO(client.get(answer["url"]).data))
    assert len(audio) == pytest.approx(made[0] + made[1] + made[2] / 2, abs=rate * 0.01)  # the last at speed 2


@pytest.mark.parametrize(
    ("route", "body", "needle"),
    [
        ("/synthesize", {"text": "<speak><phoneme ph='x'>a</phoneme></speak>"}, "<phoneme>"),
        ("/synthesize", {"text": "<speak>Hi <speak>x</speak></speak>"}, "<speak> is the root"),
        ("/synthesize", {"text": "<speak><voice name='nobody'>Hi</voice></speak>"}, '<voice name="nobody">'),
        ("/synthesize", {"text": "Hi [pause:60s] there"}, "a pause is at most"),
        ("/synthesize", {"text": "<speak>Hi</speak", "ssml": True}, "not well-formed"),
        ("/synthesize", {"text": "Hi", "lexicon": {"en": {"Hi": "Hi there"}}}, "lexicon entry en:'Hi'"),
        ("/synthesize", {"text": "Hi", "normalize": "yes"}, "normalize must be"),
        ("/v1/audio/speech", {**SPEECH, "input": "<speak><audio src='x'/></speak>"}, "<audio>"),
        ("/v1/audio/speech/plan", {**SPEECH, "input": "Hi", "lexicon": {"en": {"": "x"}}}, "must not be empty"),
        ("/v1/audio/speech/plan", {**SPEECH, "input": "<speak><break time='11s'/>x</speak>"}, "at most 10 s"),
    ],
)
def test_bad_markup_is_a_json_400_naming_it(app: Any, route: str, body: dict[str, Any], needle: str) -> None:
    got = app.test_client().post(route, json=body)
    assert got.status_code == 400, got.get_data(as_text=True)[:300]
    assert needle in got.get_json()["error"]["message"]
    assert engine_of(app).requests == [] if app.extensions["barkserve"].synthesizer.engines() else True


def test_the_server_lexicon_file_is_applied_and_reported(make_app: Any, tmp_path: Path) -> None:
    path = tmp_path / "lexicon.json"
    path.write_text(json.dumps({"en": {"Nguyen": "win"}}), encoding="utf-8")
    app = make_app(engine_factory=FakeEngine, lexicon_file=str(path))
    plan = app.test_client().post("/v1/audio/speech/plan", json={**SPEECH, "input": "Mr Nguyen."}).get_json()
    assert plan["spoken_text"] == "Mr win."
    assert plan["substitutions"] == [{"chunk": 0, "original": "Nguyen", "said": "win", "source": "lexicon:server"}]


def bearer(app: Any, name: str, scopes: str) -> dict[str, str]:
    _, secret = app.extensions["barkserve.access"].keys.create(name, scopes)
    return {"Authorization": f"Bearer {secret}"}


def test_each_key_has_its_own_lexicon_under_the_requests(app: Any) -> None:
    client = app.test_client()
    alice, bob = bearer(app, "alice", "speak,lexicon"), bearer(app, "bob", "speak,lexicon")
    speaker = bearer(app, "speaker", "speak")
    assert client.get("/lexicon", headers=alice).get_json() == {"lexicon": {}, "entries": 0, "server_entries": 0}
    put = client.put("/lexicon", headers=alice, json={"lexicon": {"en": {"Nguyen": "win", "SQL": "sequel"}}})
    assert put.status_code == 200 and put.get_json()["entries"] == 2
    assert client.get("/lexicon", headers=alice).get_json()["lexicon"] == {"en": {"Nguyen": "win", "SQL": "sequel"}}

    def spoken(headers: dict[str, str], **more: Any) -> str:
        body = {**SPEECH, "input": "Nguyen likes SQL.", **more}
        answer = client.post("/v1/audio/speech/plan", headers=headers, json=body)
        assert answer.status_code == 200, answer.get_json()
        return str(answer.get_json()["spoken_text"])

    assert spoken(alice) == "win likes sequel."
    assert spoken(bob) == "Nguyen likes SQL."  # another key's lexicon is not applied
    assert spoken(alice, lexicon={"en": {"Nguyen": "noo-yen"}}) == "noo-yen likes sequel."  # the request's wins
    assert client.get("/lexicon", headers=speaker).status_code == 403  # the scope is needed
    assert client.put("/lexicon", headers=speaker, json={"lexicon": {}}).status_code == 403
    assert client.delete("/lexicon", headers=alice).get_json() == {"deleted": True}
    assert spoken(alice) == "Nguyen likes SQL."
    assert client.delete("/lexicon", headers=alice).get_json() == {"deleted": False}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"lexicon": {"en": {"A": "B", "B": "C"}}}, "contains the word 'B'"),
        ({"lexicon": {"en": {"x": "y" * 300}}}, "at most 256"),
        ({"lexicon": None}, "DELETE /lexicon"),
        ({}, "field 'lexicon' is required"),
        ({"lexicon": {}, "extra": 1}, "unknown field"),
    ],
)
def test_bad_lexicons_are_a_400_and_leave_the_stored_one(app: Any, body: dict[str, Any], needle: str) -> None:
    client = app.test_client()
    client.put("/lexicon", json={"lexicon": {"Nguyen": "win"}})
    got = client.put("/lexicon", json=body)
    assert got.status_code == 400 and needle in got.get_json()["error"]["message"]
    assert client.get("/lexicon").get_json()["lexicon"] == {"*": {"Nguyen": "win"}}
