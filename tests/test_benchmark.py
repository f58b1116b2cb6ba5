"""The engine benchmark script imports and parses its flags (it is run as a script, not a test)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def test_bench_script_help_lists_its_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_engine", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "BarkModel.generate" in out and "--quick" in out
