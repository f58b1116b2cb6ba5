"""The CLI: say, make-tiny, and config errors as messages instead of tracebacks."""

from pathlib import Path

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from barkserve.cli import main


def test_say_writes_a_reproducible_wav(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    outputs = []
    for name in ("a.wav", "b.wav"):
        out = tmp_path / name
        args = ["say", "Hello [laughs]", "-o", str(out), "--voice", "3", "--seed", "7", "--max-duration", "0.4"]
        result = runner.invoke(main, [*args, "--model", str(tiny_model_dir), "--offline"])
        assert result.exit_code == 0, result.output
        assert "voice v2/en_speaker_3, seed 7" in result.output
        audio, rate = sf.read(out)
        assert rate == 24_000 and 0 < len(audio) / rate <= 0.4
        outputs.append(audio)
    assert np.array_equal(outputs[0], outputs[1])


def test_say_reports_bad_input_without_a_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    args = ["say", "hi", "-o", str(tmp_path / "x.wav"), "--voice", "12", "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "0-9" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.wav").exists()


def test_env_reaches_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {"BARKSERVE_MODEL": str(tiny_model_dir), "BARKSERVE_DEFAULT_VOICE": "v2/ko_speaker_4"}
    out = tmp_path / "env.wav"
    result = CliRunner().invoke(main, ["say", "hi", "-o", str(out), "--max-duration", "0.2"], env=env)
    assert result.exit_code == 0, result.output
    assert "voice v2/ko_speaker_4" in result.output


def test_make_tiny_builds_a_loadable_checkpoint(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["make-tiny", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    for name in ("config.json", "generation_config.json", "model.safetensors", "speaker_embeddings_path.json"):
        assert (tmp_path / "tiny" / name).is_file()
    say = ["say", "hi", "-o", str(tmp_path / "t.wav"), "--model", str(tmp_path / "tiny"), "--max-duration", "0.2"]
    assert CliRunner().invoke(main, [*say, "--voice", "v2/zh_speaker_0"]).exit_code == 0
