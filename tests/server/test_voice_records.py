"""Who cloned a voice: the record is written only around the file, and records left by a crash are dropped."""

from __future__ import annotations

import datetime as dt
import io
import threading
from typing import Any

import numpy as np
import soundfile as sf
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from barkserve.server.access import EXTENSION, STALE_CLAIM_SEC, Access
from support import FakeEngine

HANG_GUARD_SEC = 120  # stops a hung test; not a speed assertion
LATER = dt.timedelta(seconds=STALE_CLAIM_SEC + 1)


def access_of(app: Flask) -> Access:
    found: Access = app.extensions[EXTENSION]
    return found


def new_key(app: Flask, name: str) -> tuple[str, dict[str, str]]:
    key, secret = access_of(app).keys.create(name, "speak,clone")
    return key.id, {"Authorization": f"Bearer {secret}"}


def clone(client: FlaskClient, name: str, headers: dict[str, str]) -> Any:
    t = np.arange(48_000) / 24_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, 24_000, format="WAV")
    form = {"file": (io.BytesIO(buf.getvalue()), "ref.wav"), "name": name}
    return client.post("/voices", data=form, content_type="multipart/form-data", headers=headers)


def custom_voices(client: FlaskClient, headers: dict[str, str]) -> list[str]:
    voices: list[str] = client.get("/voices", headers=headers).get_json()["custom"]
    return voices


def test_a_clone_in_progress_holds_no_record_so_a_kill_leaves_none(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    _, alice = new_key(app, "alice")
    cloner = app.extensions["barkserve"].cloner
    codec_model, encoding, release = cloner.codec_model, threading.Event(), threading.Event()

    def held_codec() -> Any:  # the clone stops here, mid-way, until the test lets it go on
        encoding.set()
        release.wait(HANG_GUARD_SEC)
        return codec_model()

    cloner.codec_model = held_codec
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(clone(app.test_client(), "mine", alice)))
    worker.start()
    try:
        assert encoding.wait(HANG_GUARD_SEC)
        # A SIGKILL now would leave exactly this: no record, so the name stays free.
        assert access_of(app).keys.voice_owners() == {}
    finally:
        release.set()
        worker.join(HANG_GUARD_SEC)
    assert answers[0].status_code == 201, answers[0].get_json()
    assert "mine" in access_of(app).keys.voice_owners()


def test_a_record_left_without_a_file_frees_its_name_on_conflict(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    client = app.test_client()
    alice_id, alice = new_key(app, "alice")
    bob_id, bob = new_key(app, "bob")
    keys = access_of(app).keys
    assert keys.claim_voice("lost", alice_id)  # what a process killed between record and file leaves
    # A fresh record may be another process writing the file right now: the name is still taken.
    assert clone(client, "lost", bob).status_code == 409
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + LATER, tick=False):
        made = clone(client, "lost", bob)
    assert made.status_code == 201, made.get_json()
    assert keys.voice_owner("lost") == (True, bob_id)
    assert "lost" in custom_voices(client, bob) and "lost" not in custom_voices(client, alice)
    # A record with its file is never dropped, however old.
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + 10 * LATER, tick=False):
        assert clone(client, "lost", alice).status_code == 409
    assert keys.voice_owner("lost") == (True, bob_id)


def test_start_up_drops_records_without_files_and_keeps_the_rest(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine)
    alice_id, alice = new_key(app, "alice")
    keys = access_of(app).keys
    assert clone(app.test_client(), "kept", alice).status_code == 201
    assert keys.claim_voice("ghost", alice_id)
    voices_dir = app.extensions["barkserve"].config.voices_dir
    (voices_dir / "house.npz").write_bytes((voices_dir / "kept.npz").read_bytes())  # the operator's: no record
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + LATER, tick=False):
        assert keys.claim_voice("writing", alice_id)  # a fresh one: another process is writing its file
        restarted = make_app(engine_factory=FakeEngine)  # same database and voices folder
    assert access_of(restarted).keys.voice_owners() == {"kept": alice_id, "writing": alice_id}
    client = restarted.test_client()
    _, bob = new_key(restarted, "bob")
    assert sorted(custom_voices(client, bob)) == ["house"]
    assert clone(client, "ghost", bob).status_code == 201
