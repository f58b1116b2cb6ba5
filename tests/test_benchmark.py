"""The engine benchmark script: its flags, and its quick profile end to end on the tiny checkpoint."""

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("bench_engine", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_script_help_lists_its_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script()
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "BarkModel.generate" in out and "--quick" in out


def test_bench_runs_end_to_end_on_the_tiny_checkpoint(
    tiny_model_dir: Path, voices_fixture_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Smoke mode of the real benchmark: both implementations run, tokens are compared, a ratio printed.
    module = load_script()
    argv = ["--quick", "--model", str(tiny_model_dir), "--device", "cpu", "--voices", str(voices_fixture_dir)]
    assert module.main(argv) == 0  # 1 would mean the engine's tokens differ from BarkModel.generate's
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [*result["batch1"], result["concurrent"]]
    assert all(row["tokens_equal"] is True for row in rows)
    assert all(row["ratio"] > 0 and row["reference_sec"] > 0 for row in rows)
    assert result["concurrent"]["requests"] == 2 and result["profile"] == "quick"
