"""POST /voices and DELETE /voices/<name> through the app that `create_app` builds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from cloning_helpers import voice_like, write_audio

from barkserve.config import ServerConfig
from barkserve.server import create_app
from barkserve.voices import VoicePrompt

MAX_BYTES = 400_000


@pytest.fixture
def voices(tmp_path: Path) -> Path:
    return tmp_path / "root" / "voices"


@pytest.fixture
def client(tiny_model_dir: Path, tiny_hubert_dir: Path, tiny_quantizer: Path, voices: Path) -> Any:
    config = ServerConfig(
        model=str(tiny_model_dir),
        voices_dir=voices,
        output_dir=voices.parent.parent / "server" / "out",
        jobs_dir=voices.parent.parent / "server" / "jobs",
        offline=True,
        hubert=str(tiny_hubert_dir),
        quantizer=str(tiny_quantizer),  # no layer: the quantizer's own
        max_upload_bytes=MAX_BYTES,
        max_body_bytes=1024,  # the JSON routes' small limit must not apply here
    )
    return create_app(config, start_jobs=False).test_client()


def wav_bytes(seconds: float, rate: int = 16_000, fmt: str = "WAV", **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, voice_like(seconds, rate, **kwargs), rate, format=fmt)
    return buf.getvalue()


def post(client: Any, data: bytes | None, name: str | None, filename: str = "ref.wav") -> Any:
    form: dict[str, Any] = {}
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    if name is not None:
        form["name"] = name
    return client.post("/voices", data=form, content_type="multipart/form-data")


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_post_clones_and_delete_removes(client: Any, voices: Path, tmp_path: Path) -> None:
    data = write_audio(tmp_path / "ref.ogg", 3.0).read_bytes()
    response = post(client, data, "alice", "ref.ogg")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()["voice"]
    assert body["name"] == "alice" and body["semantic"] is True
    assert body["codec_frames"] == 225 and body["semantic_tokens"] == 150
    assert all_files(tmp_path / "root") == {voices / "alice.npz"}
    VoicePrompt.from_npz(voices / "alice.npz")
    assert post(client, data, "alice").status_code == 409
    assert client.delete("/voices/alice").get_json() == {"deleted": "alice"}
    assert not (voices / "alice.npz").exists()
    assert client.delete("/voices/alice").status_code == 404
    assert client.delete("/voices/v2/en_speaker_1").status_code == 403
    assert client.delete("/voices/announcer").status_code == 403


BAD = [
    ("too_short", lambda: wav_bytes(0.4), "bob", 400, "invalid_audio"),
    ("silent", lambda: wav_bytes(2.0, level=0.0), "bob", 400, "invalid_audio"),
    ("corrupt", lambda: wav_bytes(2.0)[:100], "bob", 400, "invalid_audio"),
    ("unsupported", lambda: wav_bytes(2.0, fmt="AIFF"), "bob", 415, "unsupported_audio_format"),
    ("not_audio", lambda: b"%PDF-1.4 not audio", "bob", 415, "unsupported_audio_format"),
    ("too_large", lambda: wav_bytes(30.0, rate=48_000), "bob", 413, "audio_too_large"),
    ("just_over_limit", lambda: wav_bytes(12.6, rate=16_000), "bob", 413, "audio_too_large"),
    ("preset_name", lambda: wav_bytes(2.0), "announcer", 409, "voice_exists"),
    ("empty_name", lambda: wav_bytes(2.0), "", 400, "invalid_voice"),
    ("no_name", lambda: wav_bytes(2.0), None, 400, "invalid_voice"),
    ("traversal_name", lambda: wav_bytes(2.0), "../../evil", 400, "invalid_voice"),
    ("slash_name", lambda: wav_bytes(2.0), "a/b", 400, "invalid_voice"),
    ("no_file", lambda: None, "bob", 400, "invalid_request"),
]


@pytest.mark.parametrize(("case", "make", "name", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_uploads_get_a_clear_4xx_and_write_nothing(
    client: Any, tmp_path: Path, case: str, make: Any, name: str | None, status: int, code: str
) -> None:
    before = all_files(tmp_path)
    response = post(client, make(), name)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    if status == 413:
        assert "390 KiB" in error["message"]
    assert all_files(tmp_path) == before


def test_json_body_is_refused(client: Any) -> None:
    response = client.post("/voices", json={"name": "x", "file": "AAAA"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.get_json()["error"]["message"]


def test_same_name_twice_at_once_only_one_wins(client: Any, voices: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = wav_bytes(1.5)
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: post(client, data, "race").status_code, range(4)))
    assert codes.count(201) == 1 and set(codes[1:]) == {409}
    assert [p.name for p in voices.iterdir()] == ["race.npz"]
    assert np.load(voices / "race.npz")["fine_prompt"].shape == (8, 113)
