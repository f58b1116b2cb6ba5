"""Voices as clients expect: uploads record consent, transcript, description and language (consent is
required from beyond this machine), a cap per key, a cached preview per voice, languages in the list."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from barkserve.server.access import EXTENSION as ACCESS
from barkserve.server.voice_preview import SENTENCES
from barkserve.voices import VoicePrompt, read_record
from support import FakeEngine

REMOTE = {"REMOTE_ADDR": "203.0.113.7"}  # a client beyond this machine (TEST-NET-3)


def recording(seconds: float = 2.0, rate: int = 16_000) -> bytes:
    """A vowel-like signal: a 140 Hz harmonic series at a syllable rate."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    buf = io.BytesIO()
    sf.write(buf, (0.1 * tone).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def upload(client: Any, name: str, remote: bool = False, **fields: str) -> Any:
    form: dict[str, Any] = {"file": (io.BytesIO(recording()), "me.wav"), "name": name, **fields}
    return client.post("/voices", data=form, content_type="multipart/form-data",
                       environ_base=REMOTE if remote else {})  # fmt: skip


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app(engine_factory=FakeEngine)


def voices_dir(app: Any) -> Path:
    found: Path = app.extensions["barkserve"].config.voices_dir
    return found


def test_an_upload_records_what_it_says_of_the_voice(app: Any) -> None:
    client = app.test_client()
    fields = {"consent": "true", "ref_text": "Hello, this is me.", "description": "warm, slow", "language": "de"}
    got = upload(client, "anna", **fields)
    assert got.status_code == 201, got.get_json()
    voice = got.get_json()["voice"]
    assert (voice["consent"], voice["ref_text"], voice["description"], voice["language"]) == (
        True, "Hello, this is me.", "warm, slow", "de")  # fmt: skip
    record = read_record(voices_dir(app) / "anna.npz")  # kept in the voice's own file
    assert record.consent is True and record.ref_text == "Hello, this is me." and record.created_at
    VoicePrompt.from_npz(voices_dir(app) / "anna.npz", strict=False)  # still a valid voice prompt
    listed = {v["id"]: v for v in client.get("/v1/audio/voices").get_json()["voices"]}
    assert listed["anna"]["language"] == "de" and listed["anna"]["description"] == "warm, slow"
    assert listed["anna"]["consent"] is True and listed["anna"]["kind"] == "custom"
    # Its preview speaks the recorded language.
    assert client.get("/voices/anna/preview").status_code == 200
    assert spoken_text(app) == SENTENCES["de"]


def test_uploads_from_beyond_this_machine_need_consent(app: Any) -> None:
    client = app.test_client()
    for fields in ({}, {"consent": "false"}):
        got = upload(client, "far", remote=True, **fields)
        assert got.status_code == 400 and got.get_json()["error"]["code"] == "consent_required"
        assert "consent=true" in got.get_json()["error"]["message"]
        assert not (voices_dir(app) / "far.npz").exists()
    assert upload(client, "far", remote=True, consent="true").status_code == 201
    # From this machine consent is recorded when given, and not required.
    near = upload(client, "near")
    assert near.status_code == 201 and near.get_json()["voice"]["consent"] is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"consent": "maybe"}, "form field 'consent' (true or false) is not valid JSON"),
        ({"consent": "1"}, "consent must be true or false"),
        ({"language": "xx"}, "language must be one of"),
        ({"ref_text": "x" * 2001}, "ref_text must be text of at most 2000 characters"),
        ({"description": "x" * 501}, "description must be text of at most 500 characters"),
        ({"voice": "x"}, "unknown form field(s) ['voice']"),
    ],
)
def test_bad_record_fields_are_a_400_and_save_nothing(app: Any, fields: dict[str, str], message: str) -> None:
    got = upload(app.test_client(), "bad", **fields)
    assert got.status_code == 400 and message in got.get_json()["error"]["message"]
    assert not (voices_dir(app) / "bad.npz").exists()


def test_a_key_stores_at_most_max_voices_per_key(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine, max_voices_per_key=2)
    client = app.test_client()
    assert upload(client, "one").status_code == 201 and upload(client, "two").status_code == 201
    third = upload(client, "three")
    assert third.status_code == 409 and third.get_json()["error"]["code"] == "too_many_voices"
    assert "max_voices_per_key 2" in third.get_json()["error"]["message"]
    assert not (voices_dir(app) / "three.npz").exists()
    assert client.delete("/voices/one").status_code == 200
    assert upload(client, "three").status_code == 201


def spoken_text(app: Any) -> str:
    """Which preview sentence the engine's last request spoke (its tokens compared with each's)."""
    synth = app.extensions["barkserve"].synthesizer
    engine = synth.engine(synth.config.default_model)
    ids = list(engine.requests[-1].text_ids)
    return next(text for text in SENTENCES.values() if list(engine.tokenize(text)) == ids)


def engine_requests(app: Any) -> int:
    synth = app.extensions["barkserve"].synthesizer
    return len(synth.engine(synth.config.default_model).requests)


def test_a_preview_is_made_once_and_served_from_disk(app: Any) -> None:
    client = app.test_client()
    first = client.get("/voices/v2/de_speaker_1/preview?format=wav")
    assert first.status_code == 200 and first.mimetype == "audio/wav" and first.headers["X-Preview-Made"] == "true"
    audio, rate = sf.read(io.BytesIO(first.data))
    assert rate == 24_000 and len(audio) > 0
    made = engine_requests(app)
    again = client.get("/voices/v2/de_speaker_1/preview?format=wav")
    assert again.headers["X-Preview-Made"] == "false" and again.data == first.data
    assert engine_requests(app) == made  # nothing generated the second time
    # The German preset speaks the German sentence.
    assert spoken_text(app) == SENTENCES["de"]
    assert client.get("/voices/v2/en_speaker_1/preview").headers["X-Preview-Made"] == "true"
    assert spoken_text(app) == SENTENCES["en"]


def test_a_changed_voice_gets_a_new_preview(app: Any) -> None:
    client = app.test_client()
    registry = app.extensions["barkserve"].synthesizer.registry
    presets = registry.voices(registry.resolve(None))
    voices_dir(app).mkdir(parents=True, exist_ok=True)
    np.savez(voices_dir(app) / "mine.npz", **presets.load("v2/en_speaker_1").arrays())
    first = client.get("/voices/mine/preview")
    assert first.status_code == 200 and first.mimetype == "audio/mpeg" and first.headers["X-Preview-Made"] == "true"
    assert client.get("/voices/mine/preview").headers["X-Preview-Made"] == "false"
    previews = voices_dir(app) / ".previews"
    (old,) = previews.glob("mine.*")
    np.savez(voices_dir(app) / "mine.npz", **presets.load("v2/en_speaker_2").arrays())  # the voice changes
    changed = client.get("/voices/mine/preview")
    assert changed.headers["X-Preview-Made"] == "true"
    (new,) = previews.glob("mine.*")
    assert new != old and not old.exists()
    assert client.delete("/voices/mine").status_code == 200
    assert list(previews.glob("mine.*")) == []
    assert client.get("/voices/mine/preview").status_code == 404


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/voices/nobody/preview", 404, "no voice named 'nobody'"),
        ("/voices/v2/en_speaker_1/preview?format=aiff", 400, "format must be one of"),
        ("/voices/v2/en_speaker_1/preview?model=nope", 400, "model"),
    ],
)
def test_bad_previews(app: Any, path: str, status: int, message: str) -> None:
    got = app.test_client().get(path)
    assert got.status_code == status and message in got.get_json()["error"]["message"]
    assert engine_requests(app) == 0


def test_keys_hear_previews_of_their_own_voices_and_the_shared_ones_only(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine, max_voices_per_key=1)
    keys = app.extensions[ACCESS].keys
    alice = {"Authorization": f"Bearer {keys.create('alice', 'speak,clone')[1]}"}
    bob = {"Authorization": f"Bearer {keys.create('bob', 'speak,clone')[1]}"}
    client = app.test_client()
    form = {"file": (io.BytesIO(recording()), "me.wav"), "name": "alices", "language": "fr"}
    assert client.post("/voices", data=form, content_type="multipart/form-data", headers=alice).status_code == 201
    # The cap is per key: bob may still store one.
    form = {"file": (io.BytesIO(recording()), "me.wav"), "name": "bobs"}
    assert client.post("/voices", data=form, content_type="multipart/form-data", headers=bob).status_code == 201
    assert client.get("/voices/alices/preview", headers=alice).status_code == 200
    hidden = client.get("/voices/alices/preview", headers=bob)
    assert hidden.status_code == 404 and "alices" in hidden.get_json()["error"]["message"]
    assert client.get("/voices/v2/en_speaker_1/preview", headers=bob).status_code == 200  # presets are shared
    by_id = {v["id"]: v for v in client.get("/v1/audio/voices", headers=bob).get_json()["voices"]}
    assert "alices" not in by_id and by_id["bobs"]["language"] is None


def test_batch_audio_counts_in_the_metrics(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    client = app.test_client()
    item = {"model": "tts-1", "input": "Hello there.", "voice": "alloy"}
    answer = client.post("/v1/audio/speech/batch", json={"items": [item, item]}).get_json()
    metrics = client.get("/metrics").get_data(as_text=True)
    series = 'barkserve_audio_seconds_total{route="/v1/audio/speech/batch"}'
    line = next(x for x in metrics.splitlines() if x.startswith(series))
    assert float(line.split()[-1]) == pytest.approx(answer["duration_sec"], abs=1e-3) and answer["duration_sec"] > 0
