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
    argv = ["--smoke", "--out", str(tmp_path), "--voices", str(voices_fixture_dir), "--modes", "graphs,fused",
            "--batch1", "reference,eager,graphs", "--concurrent", "reference,graphs",
            "--step-modes", "eager,graphs,fused", "--commit", "abc1234"]  # fmt: skip
    assert module.main(argv) == 0  # 1 would mean an fp32 token comparison failed or a part broke
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = result["parts"]
    assert result["errors"] == {} and result["environment"]["commit"] == "abc1234"
    assert result["environment"]["flash_attn"] == "not installed"
    assert parts["correctness_fp32"]["all_equal"] is True and len(parts["correctness_fp32"]["rows"]) == 3
    assert parts["graphs_fp32_tokens"]["vs_reference_all_equal"] is True
    assert parts["fused_fp32_tokens"]["vs_reference_all_equal"] is True  # the inductor-compiled step
    assert set(parts["batch1_bf16"]["runs"]) == {"reference", "eager", "graphs"}
    assert all(len(runs) == 2 for runs in parts["batch1_bf16"]["runs"].values())
    levels = parts["concurrent_bf16"]["levels"]
    assert result["concurrency"] == [2, 4] and set(levels) == {"2", "4"}
    assert levels["4"]["graphs"]["throughput_vs_reference"] > 0 and levels["4"]["requests"] == 4
    # The documented ways: half precision runs on the CPU; Flash Attention and offloading say why not.
    docs = parts["docs_reference"]["variants"]
    assert docs["fp16"]["dtype"] == "float16" and docs["fp16"]["batch1"]["realtime_x"] > 0
    assert docs["fp16_fa2"]["skipped"].startswith("flash-attn not installed")
    assert "CUDA" in docs["offload"]["skipped"]
    ratios = result["comparisons"]
    assert ratios["batch1"]["fastest_docs_variant"] == "fp16"
    assert (
        ratios["batch1"]["graphs_vs_fastest_docs"]
        == docs["fp16"]["batch1"]["sec"] / (parts["batch1_bf16"]["graphs"]["sec_median"])
    )
    assert ratios["concurrent"]["graphs_at_4_vs_fastest_docs"] > 0
    assert parts["ttfa_bf16"]["chunks"] >= 2 and parts["ttfa_bf16"]["ttfa_over_first_alone"] > 0
    bench = parts["step_bench_bf16"]
    assert {"eager_rows1_decoder_ms", "graphs_rows4_stage_step_ms", "fused_rows4_decoder_ms"} <= set(bench)
    # Fusing: the compiled step leaves fewer operators than the eager one (on a CPU the profiler
    # counts operators; on a GPU, kernels).
    assert 0 < bench["fused_rows4_kernels"]["cpu_ops"] < bench["graphs_rows4_kernels"]["cpu_ops"]
    targets = result["targets"]
    assert targets["applies"] is False and targets["fp32_tokens_equal"]["met"] is True
    assert set(targets["fp32_tokens_equal"]["measured"]) == {"eager", "graphs", "fused"}
    assert targets["batch1_realtime_x"]["met"] in (True, False)
    assert targets["concurrent64_audio_sec_per_sec"]["met"] is None  # no level of 64 in smoke mode
    summary = (tmp_path / "gpu_check.txt").read_text()
    assert "fp32 engine == BarkModel.generate, every row of a mixed batch of 3: True" in summary
    assert "target fp32_tokens_equal (every row, every mode): PASS" in summary


def test_gpu_check_targets_fail_when_a_mode_breaks() -> None:
    module = load_script("gpu_check.py")
    parts = {
        "correctness_fp32": {"all_equal": True},
        "fused_fp32_tokens": {"vs_reference_all_equal": False},
        "batch1_bf16": {"reference": {"sec_median": 10.0, "realtime_x": 1.0},
                        "fused": {"sec_median": 0.4, "realtime_x": 25.0}},
        "concurrent_bf16": {"levels": {"64": {"fused": {"audio_sec_per_sec": 100.0}}}},
    }  # fmt: skip
    result = {"parts": parts, "errors": {"graphs_fp32_tokens": "boom"}, "shape": "bark-small",
              "environment": {"device": "cuda"}}  # fmt: skip
    targets = module.targets(result)
    assert targets["applies"] is True
    assert targets["fp32_tokens_equal"]["met"] is False
    assert targets["fp32_tokens_equal"]["measured"] == {"eager": True, "fused": False, "graphs": False}
    assert targets["batch1_realtime_x"] == {"target": 20.0, "measured": 25.0, "by": "fused", "met": True}
    assert targets["concurrent64_audio_sec_per_sec"]["met"] is False


def test_gpu_check_first_divergence() -> None:
    module = load_script("gpu_check.py")
    assert module.first_divergence(np.array([1, 2, 3]), np.array([1, 2, 3])) is None
    assert module.first_divergence(np.array([1, 2, 3, 4]), np.array([1, 2, 9, 4])) == 2
    assert module.first_divergence(np.array([1, 2]), np.array([1, 2, 3])) == 2
    assert module.first_divergence(np.zeros((8, 3)), np.zeros((8, 3))) is None


def test_bench_books_plans_a_book_in_smoke_mode(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Smoke mode of the book-planning benchmark: one timed plan and one under tracemalloc.
    from bookfiles import CHAPTERS, make_epub

    module = load_script("bench_books.py")
    book = make_epub(tmp_path / "b.epub")
    assert module.main(["--quick", "--book", str(book), "--model", str(tiny_model_dir)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["book"] == "b.epub" and result["chapters"] == len(CHAPTERS) and result["repeats"] == 1
    assert result["chunks"] >= len(CHAPTERS) and result["seconds"]["median"] > 0 and result["python_peak_mb"] > 0
    assert result["targets"] == {"seconds": 10.0, "memory_mb": 500.0} and result["versions"]["pypdfium2"] != "missing"


def test_gpu_check_runs_the_gpu_tests_and_counts_them(tmp_path: Path) -> None:
    # What gpu_check records of `pytest -m gpu tests/gpu`: here, without a GPU, every one of them skips.
    module = load_script("gpu_check.py")
    result = module.run_gpu_tests(tmp_path)
    assert result["returncode"] == 0 and result["tests"] >= 3 and result["skipped"] == result["tests"], result
    assert result["passed"] == 0 and result["all_passed"] is False  # skipped is not passed
    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="t" name="ok"/><testcase classname="t" name="bad"><failure message="x"/></testcase>'
        '<testcase classname="t" name="broken"><error message="y"/></testcase>'
        '<testcase classname="t" name="off"><skipped message="z"/></testcase></testsuite></testsuites>'
    )
    counts = module.junit_counts(report)
    assert {k: counts[k] for k in ("tests", "passed", "failed", "errors", "skipped")} == {
        "tests": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1
    }  # fmt: skip
    assert counts["failures"] == ["t::bad", "t::broken"]
    assert module.junit_counts(tmp_path / "none.xml")["errors"] == 1  # pytest never wrote its report


def test_qc_calibration_smoke_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    # Real espeak-ng speech and the real shipped predictors; the smoke set is small, the shape is the full one's.
    module = load_script("calibrate_qc.py")
    assert module.main(["--smoke"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["smoke"] and set(result["mos"]) == {"dnsmos", "distillmos"}
    for gate in [*result["mos"].values(), result["speaker"]["resemblyzer"]]:
        chosen = gate["chosen"]
        assert chosen is not None and chosen["false_alarm_rate"] <= result["max_false_alarms"]
        # The chosen threshold is the highest within the false-alarm budget, as the docs say.
        higher = [r for r in gate["sweep"] if r["threshold"] > chosen["threshold"]]
        assert all(r["false_alarm_rate"] > result["max_false_alarms"] for r in higher)
    # On this set DNSMOS at its chosen threshold catches all the noise it was given.
    assert result["mos"]["dnsmos"]["chosen"]["detection_by_kind"]["noise"] == 1.0
    assert (
        result["speaker"]["resemblyzer"]["scores"]["same_voice"]["min"]
        > result["speaker"]["resemblyzer"]["scores"]["other_voice"]["max"]
    )
    # The signal gate: each check flags no clean clip and all of the damage it is for, on this set.
    signal = result["signal"]
    assert set(signal["chosen"]) == {"min_rms_dbfs", "max_clipping", "max_flatness", "min_voiced_share"}
    assert signal["gate"]["false_alarm_rate"] == 0.0
    assert all(signal["gate"]["detection_by_kind"][k] == 1.0 for k in ("snr0", "noise", "silence", "clipped"))


def test_finetune_bench_runs_end_to_end_on_tiny_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("bench_finetune.py")
    assert module.main(["--quick", "--modes", "lora,full"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["mode"], r["stage"]): r for r in result["rows"]}
    assert set(rows) == {(m, s) for m in ("lora", "full") for s in ("semantic", "coarse", "fine")}
    assert all(r["steps_per_sec"] > 0 and r["peak_mb"] > 0 for r in rows.values())
    # LoRA trains a small share of what full fine-tuning of the same stage trains.
    assert all(rows["lora", s]["trainable"] * 10 < rows["full", s]["trainable"] for s in ("semantic", "coarse", "fine"))
