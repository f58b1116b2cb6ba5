"""Cloning end to end: POST /voices and `barkserve clone` against a real server, then synthesis by name."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from cloning_helpers import write_audio

from barkserve.config import ServerConfig
from barkserve.synthesizer import Synthesizer
from serverproc import running_server

SHORT = {"max_duration_sec": 0.3}
pytestmark = pytest.mark.slow  # starts a server and a CLI process


def test_clone_over_http_and_cli_then_speak(
    tiny_model_dir: Path, tiny_hubert_dir: Path, tiny_quantizer: Path, tmp_path: Path
) -> None:
    extra = ("--hubert", str(tiny_hubert_dir), "--quantizer", str(tiny_quantizer))
    ref = write_audio(tmp_path / "me.wav", 4.0)
    with running_server(tiny_model_dir, tmp_path, *extra) as base:
        with ref.open("rb") as f:
            created = requests.post(f"{base}/voices", files={"file": ("me.wav", f)}, data={"name": "me"}, timeout=300)
        assert created.status_code == 201, created.text
        voice = created.json()["voice"]
        assert voice["semantic"] and voice["codec_frames"] > 0
        assert abs(voice["semantic_tokens"] - voice["codec_frames"] * 49.9 / 75) <= 2
        assert "me" in requests.get(f"{base}/voices", timeout=10).json()["custom"]

        said = requests.post(f"{base}/synthesize", json={"text": "My own voice.", "voice_preset": "me", **SHORT})
        assert said.status_code == 200 and said.json()["voice_preset"] == "me"

        cmd = [sys.executable, "-m", "barkserve.cli", "clone", str(ref), "--name", "from_cli"]
        cmd += ["--voices-dir", str(tmp_path / "voices"), "--model", str(tiny_model_dir), "--offline", *extra]
        cli = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert cli.returncode == 0, cli.stderr
        said = requests.post(f"{base}/synthesize", json={"text": "Cloned by the CLI.", "voice_preset": "from_cli"})
        assert said.status_code == 200 and said.json()["voice_preset"] == "from_cli"

        taken = requests.post(f"{base}/voices", files={"file": ("me.wav", ref.read_bytes())}, data={"name": "me"})
        assert taken.status_code == 409
        assert requests.delete(f"{base}/voices/v2/en_speaker_1", timeout=10).status_code == 403
        assert requests.delete(f"{base}/voices/me", timeout=10).status_code == 200
        gone = requests.post(f"{base}/synthesize", json={"text": "Gone.", "voice_preset": "me", **SHORT})
        assert gone.status_code == 400 and gone.json()["error"]["code"] == "invalid_voice"
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == ["from_cli.npz"]


def test_a_voice_without_semantic_prompt_speaks(tiny_model_dir: Path, tmp_path: Path, voices_fixture_dir: Path) -> None:
    """Cloned with no quantizer: coarse and fine prompts only; synthesis still runs with it."""
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    synth = Synthesizer(config)
    with np.load(voices_fixture_dir / "v2" / "en_speaker_3.npz") as real:
        np.savez(tmp_path / "nosem.npz", semantic_prompt=np.zeros(0, np.int64), coarse_prompt=real["coarse_prompt"],
                 fine_prompt=real["fine_prompt"])  # fmt: skip
    result = synth.synthesize("Hello.", voice="nosem", options={"seed": 1, **SHORT})
    assert result.voice == "nosem" and len(result.audio) > 0


@pytest.mark.parametrize("name", ["v2/en_speaker_1", "announcer"])
def test_presets_keep_a_semantic_prompt(tiny_model_dir: Path, tmp_path: Path, name: str) -> None:
    synth = Synthesizer(ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True))
    assert synth.registry.voices(synth.config.default_model).load(name).has_semantic
