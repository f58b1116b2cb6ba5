"""The engine benchmark script: its flags, and its quick profile end to end on the tiny checkpoint."""

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str = "bench_engine.py") -> Any:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), BENCHMARKS / name)
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


def test_ttfa_bench_runs_end_to_end_on_the_tiny_checkpoint(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_script("bench_ttfa.py")
    assert module.main(["--quick", "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["cases"]) == {"1", "3", "8"} and result["cases"]["1"]["ttfa_over_first_alone"] == 1.0
    assert all(row["ttfa"]["median"] <= row["total"]["median"] for row in result["cases"].values())
    assert len(result["concurrent"]["ttfa_each"][0]) == 4
    assert result["torch"] and result["commit"] and result["repeats"] == 1


def test_qc_bench_runs_end_to_end_on_the_tiny_checkpoint(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_script("bench_qc.py")
    assert module.main(["--quick", "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["asr_shape"] == "tiny" and result["chunks"] >= 2 and result["repeats"] == 1
    assert result["overhead_ratio"] == result["qc_sec"]["median"] / result["plain_sec"]["median"]
    assert result["qc_sec"]["median"] > 0 and result["plain_sec"]["median"] > 0


def test_gpu_check_runs_every_part_in_smoke_mode(tmp_path: Path, voices_fixture_dir: Path) -> None:
    # The GPU check's smoke mode: tiny shapes on the CPU, every part, the same code the GPU run uses.
    module = load_script("gpu_check.py")
    argv = ["--smoke", "--out", str(tmp_path), "--voices", str(voices_fixture_dir), "--modes", "graphs",
            "--step-modes", "eager,graphs", "--commit", "abc1234"]  # fmt: skip
    assert module.main(argv) == 0  # 1 would mean an fp32 token comparison failed or a part broke
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = result["parts"]
    assert result["errors"] == {} and result["environment"]["commit"] == "abc1234"
    assert parts["correctness_fp32"]["all_equal"] is True and len(parts["correctness_fp32"]["rows"]) == 3
    assert parts["graphs_fp32_tokens"]["vs_reference_all_equal"] is True
    assert set(parts["batch1_bf16"]["runs"]) == {"reference", "eager", "graphs"}
    assert all(len(runs) == 2 for runs in parts["batch1_bf16"]["runs"].values())
    assert parts["concurrent_bf16"]["graphs"]["throughput_vs_reference"] > 0
    assert parts["ttfa_bf16"]["chunks"] >= 2 and parts["ttfa_bf16"]["ttfa_over_first_alone"] > 0
    assert {"eager_rows1_decoder_ms", "graphs_rows4_stage_step_ms"} <= set(parts["step_bench_bf16"])
    assert "fp32 engine == BarkModel.generate, every row of a mixed batch of 3: True" in (
        (tmp_path / "gpu_check.txt").read_text()
    )


def test_gpu_check_first_divergence() -> None:
    module = load_script("gpu_check.py")
    assert module.first_divergence(np.array([1, 2, 3]), np.array([1, 2, 3])) is None
    assert module.first_divergence(np.array([1, 2, 3, 4]), np.array([1, 2, 9, 4])) == 2
    assert module.first_divergence(np.array([1, 2]), np.array([1, 2, 3])) == 2
    assert module.first_divergence(np.zeros((8, 3)), np.zeros((8, 3))) is None


def test_finetune_bench_runs_end_to_end_on_tiny_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("bench_finetune.py")
    assert module.main(["--quick", "--modes", "lora,full"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["mode"], r["stage"]): r for r in result["rows"]}
    assert set(rows) == {(m, s) for m in ("lora", "full") for s in ("semantic", "coarse", "fine")}
    assert all(r["steps_per_sec"] > 0 and r["peak_mb"] > 0 for r in rows.values())
    # LoRA trains a small share of what full fine-tuning of the same stage trains.
    assert all(rows["lora", s]["trainable"] * 10 < rows["full", s]["trainable"] for s in ("semantic", "coarse", "fine"))
