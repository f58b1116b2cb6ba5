"""A full or unwritable disk on each writing route: a clear JSON error, and no partial file left."""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from barkserve.audio import files as audio
from barkserve.cloning import clone as clone_module
from barkserve.errors import StorageFull
from support import FakeEngine

FAULTS = [
    (errno.ENOSPC, 507, "storage_full", "disk is full"),
    (errno.EROFS, 503, "storage_unavailable", "cannot write"),
]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def failing(err: int) -> Any:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(err, "simulated")

    return fail


@pytest.mark.parametrize(("err", "status", "code", "words"), FAULTS)
def test_synthesize_on_a_failing_disk(make_app: Any, monkeypatch: pytest.MonkeyPatch, err: int, status: int,
                                      code: str, words: str) -> None:  # fmt: skip
    app = make_app(FakeEngine)
    out = app.extensions["barkserve"].config.output_dir
    monkeypatch.setattr(audio.os, "fsync", failing(err))  # the write fails after bytes went out
    response = app.test_client().post("/synthesize", json={"text": "Hello there.", "format": "mp3"})
    assert response.status_code == status, response.data
    body = response.get_json()["error"]
    assert body["code"] == code and words in body["message"] and "output/" in body["message"]
    assert files_under(out) == []  # no .part, no half-written mp3


@pytest.mark.parametrize(("err", "status", "code", "words"), FAULTS)
def test_clone_on_a_failing_disk(make_app: Any, monkeypatch: pytest.MonkeyPatch, err: int, status: int, code: str,
                                 words: str) -> None:  # fmt: skip
    app = make_app()
    voices = app.extensions["barkserve"].config.voices_dir
    monkeypatch.setattr(clone_module.os, "link", failing(err))
    t = np.arange(3 * 16_000) / 16_000
    wav = io.BytesIO()
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32),
             16_000, format="WAV")  # fmt: skip
    form = {"file": (io.BytesIO(wav.getvalue()), "me.wav"), "name": "me"}
    response = app.test_client().post("/voices", data=form, content_type="multipart/form-data")
    assert response.status_code == status, response.data
    assert response.get_json()["error"]["code"] == code
    assert files_under(voices) == []


def test_concurrent_writers_of_one_path_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "final.wav"
    seen: list[str] = []

    def write(f: Any) -> None:
        seen.append(f.name)
        if len(seen) == 1:  # a second writer of the same path starts while the first is mid-write
            audio.atomic_write(target, lambda g: (seen.append(g.name), g.write(b"second")))
        f.write(b"first")

    audio.atomic_write(target, write)
    assert len(set(seen)) == 2 and target.read_bytes() == b"first"
    assert files_under(tmp_path) == [target]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    monkeypatch.setattr(audio.os, "replace", failing(errno.ENOSPC))
    with pytest.raises(StorageFull, match="disk is full"):
        audio.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"old" and files_under(tmp_path) == [target]


def test_the_output_folder_keeps_its_retention_and_cap(tmp_path: Path) -> None:
    folder = audio.OutputFolder(tmp_path, max_bytes=3000, retention_hours=1.0)
    old, new = tmp_path / audio.new_filename("wav"), tmp_path / audio.new_filename("mp3")
    mine = tmp_path / "notes.txt"  # not a name this server writes: never touched
    for path in (old, new, mine):
        path.write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert folder.used_bytes() == 2000
    folder.check_room()  # prunes the old file, then 1000 of 3000 bytes are used
    assert not old.exists() and new.exists() and mine.exists()
    for _ in range(2):
        (tmp_path / audio.new_filename("wav")).write_bytes(b"x" * 1000)
    with pytest.raises(StorageFull, match="max_output_mb"):
        folder.check_room()


def test_synthesize_refuses_before_generating_when_the_output_folder_is_at_its_cap(make_app: Any) -> None:
    app = make_app(FakeEngine, max_output_mb=1)
    ctx = app.extensions["barkserve"]
    ctx.config.output_dir.mkdir(parents=True)
    (ctx.config.output_dir / audio.new_filename("wav")).write_bytes(b"x" * 1_048_576)
    response = app.test_client().post("/synthesize", json={"text": "Hello there."})
    assert response.status_code == 507 and response.get_json()["error"]["code"] == "storage_full"
    assert "max_output_mb" in response.get_json()["error"]["message"]
    assert ctx.synthesizer._engines == {}  # nothing was generated: the engine was never even made
