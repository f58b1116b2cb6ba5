"""The serving benchmark (benchmarks/bench_serve.py): its smoke mode end to end against real servers, its
figures' arithmetic, and the sentence list it ships."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str = "bench_serve.py") -> Any:
    """The script as a module, registered under its name (its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), BENCHMARKS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def stream(underrun: float, first: float = 0.2, total: float = 1.0, audio: float = 2.0) -> dict[str, Any]:
    return {"sentence": 0, "chunks": 1, "first_audio_sec": first, "total_sec": total, "audio_sec": audio,
            "rtf": total / audio, "underrun_sec": underrun, "stalls": int(underrun > 0)}  # fmt: skip


def run(streams: list[dict[str, Any]], wall: float, continuous: int) -> dict[str, Any]:
    audio = sum(s["audio_sec"] for s in streams)
    server = {"underrun_sec": 0.5, "streams": float(len(streams)), "continuous": float(continuous)}
    return {"level": 2, "requests": len(streams), "wall_sec": wall, "audio_sec": audio,
            "audio_per_sec": audio / wall, "streams": streams, "server": server}  # fmt: skip


def test_a_level_summary_pools_requests_and_spreads_throughput_over_repeats() -> None:
    module = load_script("bench_serve.py")
    first = run([stream(0.0), stream(0.3, first=0.5, total=3.0)], wall=2.0, continuous=1)
    second = run([stream(0.0, first=0.4), stream(0.0, first=0.1)], wall=4.0, continuous=2)
    row = module.summarize([first, second])
    assert row["requests"] == 4 and row["repeats"] == 2 and row["audio_sec"] == 8.0
    assert row["audio_per_sec"] == {"median": 1.5, "min": 1.0, "max": 2.0}  # 4 s / 2 s and 4 s / 4 s
    assert row["never_underran"] == 0.75  # three of four streams never stalled
    assert row["underrun_sec"]["total"] == pytest.approx(0.3) and row["underrun_sec"]["max"] == 0.3
    assert row["ttfa_sec"]["p50"] == pytest.approx(0.3) and row["ttfa_sec"]["p99"] <= 0.5
    assert row["rtf"]["p50"] == 0.5 and row["rtf"]["p95"] > 1.0  # the 3 s request of 2 s of audio: 1.5
    assert row["server"] == {"underrun_sec": 1.0, "streams": 4.0, "continuous": 3.0, "continuity": 0.75}


def test_the_run_plan_alternates_levels_and_keeps_a_reference_run_first() -> None:
    module = load_script("bench_serve.py")
    args = module.parse_args(["--levels", "1,4", "--repeats", "3"])
    # Level 0 is the reference: first on the first repeat, so a run cut short by --budget-sec still has it.
    assert module.plan(args, reference=True) == [(0, 0), (0, 1), (0, 4), (1, 4), (1, 1), (1, 0), (2, 0), (2, 1), (2, 4)]
    assert module.plan(args, reference=False) == [(0, 1), (0, 4), (1, 4), (1, 1), (2, 1), (2, 4)]
    with pytest.raises(SystemExit):
        module.parse_args(["--levels", "0,4"])


def test_random_weights_make_about_the_time_a_sentence_takes_to_say() -> None:
    module = load_script("bench_serve.py")
    text = "A place where astronomers conjecture away the guesses of their predecessors."  # 76 characters
    random_small = module.parse_args([])
    assert module.request_options(text, random_small, seed=7) == {"seed": 7, "text_temp": 0, "max_duration_sec": 5.43}
    assert module.request_options("Hi.", random_small, seed=7)["max_duration_sec"] == 0.5  # at least 0.5 s
    assert module.request_options(text, random_small, seed=7, cap=1.0)["max_duration_sec"] == 1.0  # warm-up
    assert module.request_options(text, module.parse_args(["--smoke"]), seed=7)["max_duration_sec"] == 0.3
    # A real checkpoint ends its speech itself, sampled as a client would ask.
    assert module.request_options(text, module.parse_args(["--model", "ckpt"]), seed=7) == {"seed": 7}


def test_the_shipped_sentences_are_many_varied_and_plain() -> None:
    lines = (BENCHMARKS / "data" / "sentences-en.txt").read_text().splitlines()
    words = [len(line.split()) for line in lines]
    assert len(lines) >= 500 and len(set(lines)) == len(lines)
    assert min(words) <= 4 and max(words) >= 35  # short and long sentences
    assert all(re.fullmatch(r"[A-Z][A-Za-z ,.;:'?!-]+[.?!]", line) and len(line) <= 230 for line in lines)
    assert "public domain" in (BENCHMARKS / "data" / "README.md").read_text()


def test_bench_serve_smoke_runs_every_part_against_real_servers(
    tmp_path: Path, voices_fixture_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two real servers (batched and reference) on random tiny weights, concurrency 1 and 2, streamed pcm.
    module = load_script("bench_serve.py")
    argv = ["--smoke", "--out", str(tmp_path), "--voices", str(voices_fixture_dir), "--commit", "abc1234"]
    assert module.main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((tmp_path / "bench_serve.json").read_text())
    assert printed == result and "audio-s/s" in (tmp_path / "bench_serve.txt").read_text()
    env = result["environment"]
    assert env["commit"] == "abc1234" and env["device"] == "cpu" and env["versions"]["openai"] != "missing"
    assert [row["level"] for row in result["levels"]] == [1, 2] and result["repeats"] == 1
    for row in [*result["levels"], result["reference"]]:
        (level_run,) = row["runs"]
        streams = level_run["streams"]
        assert row["requests"] == len(streams) == (2 if row is not result["reference"] else 1)
        # The server counted every stream the client made, with the same playback model on its send times.
        assert row["server"]["streams"] == len(streams)
        assert level_run["audio_per_sec"] == pytest.approx(level_run["audio_sec"] / level_run["wall_sec"])
        assert all(0 < s["first_audio_sec"] <= s["total_sec"] and s["audio_sec"] > 0 for s in streams)
        assert all(s["rtf"] == pytest.approx(s["total_sec"] / s["audio_sec"]) for s in streams)
        # The audio is counted in seconds: each chunk 0.3 s at most (--max-chunk-sec), 0.2 s pauses between.
        assert all(0.25 * s["chunks"] < s["audio_sec"] <= 0.5 * s["chunks"] - 0.2 + 1e-6 for s in streams)
        assert row["never_underran"] == sum(s["underrun_sec"] == 0 for s in streams) / len(streams)
        assert row["ttfa_sec"]["p50"] <= row["ttfa_sec"]["p95"] <= row["ttfa_sec"]["p99"]
        assert all((s["underrun_sec"] > 0) == (s["stalls"] > 0) for s in streams)
    ratio = result["levels"][0]["audio_per_sec"]["median"] / result["reference"]["audio_per_sec"]["median"]
    assert result["levels"][0]["vs_reference"] == pytest.approx(ratio)
