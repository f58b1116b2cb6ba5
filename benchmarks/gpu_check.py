"""GPU check: the batched engine on a GPU, correct first (tokens against `BarkModel.generate`), then fast.

One command on the GPU machine (under 8 minutes on one H100 with random bark-small weights):

1. environment: GPU, driver, torch / CUDA / transformers versions, commit; then the test suite's GPU
   tests (`pytest -m gpu tests/gpu`, in a child process), their counts and failures recorded as
   `parts.gpu_tests` (on a CUDA device by default; `--gpu-tests on|off` to choose);
2. correctness, greedy, on a mixed batch (lengths and voices differ, one row without a voice):
   fp32: every row's semantic, coarse and fine tokens against `BarkModel.generate` run alone;
   bf16: how the engine's tokens differ from the reference's (first divergence per stage), and
   whether the engine's batched rows equal the same requests run alone;
   `--compile` (CUDA graphs): its tokens against the eager engine's, in fp32 and bf16;
3. speed in bf16: a batch-1 clip (10 s) and 16 concurrent requests of mixed lengths, reference vs
   engine eager vs engine `--compile`, in the same run: seconds, real-time factor, tokens per second
   per stage, peak GPU memory; time to first audio of a streamed 3-chunk request.

Random weights with the real bark-small shapes (`--shape bark` for bark-large's), end-of-speech
pinned off so every implementation makes exactly the requested number of tokens. Parts run in order
of importance while `--budget-sec` lasts; each part is written to `OUT/gpu_check.json` as soon as it
ends, so a run cut short keeps what it measured. `--smoke` runs every part on the tiny shapes on the
CPU (the test suite does). Prints a short summary last and writes it to `OUT/gpu_check.txt`.

Run: `python benchmarks/gpu_check.py --out DIR [--smoke] [--budget-sec S] [--commit SHA]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROFILES = {
    # clip: batch-1 seconds; mixed: the correctness batch; concurrent: lengths of requests arriving together.
    "full": {"shape": "bark-small", "clip": 10.0, "mixed": (0.6, 1.3, 2.1, 0.9, 1.7, 2.5),
             "concurrent": tuple(np.linspace(0.5, 3.0, 16).round(2)), "ttfa_chunk": 2.0},
    "smoke": {"shape": "tiny", "clip": 0.6, "mixed": (0.3, 0.5, 0.4), "concurrent": (0.3, 0.5, 0.4, 0.2),
              "ttfa_chunk": 0.3},
}  # fmt: skip
STAGES = ("semantic", "coarse", "fine", "codec")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.txt")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, every part (the test suite)")
    p.add_argument("--shape", help="random weights' shapes: bark-small (default), bark (large) or tiny")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--budget-sec", type=float, default=420.0, help="start no new part after this many seconds")
    p.add_argument("--modes", default="graphs,compile", help="engine decode modes checked besides eager")
    p.add_argument("--batch1", default="reference,eager,graphs,compile", help="implementations timed at batch 1")
    p.add_argument("--concurrent", default="reference,eager,graphs,compile", help="implementations timed together")
    p.add_argument("--step-modes", default="eager,graphs,compile", help="decode modes of the per-step timing")
    p.add_argument("--no-bf16-reference", action="store_true", help="skip correctness_bf16 (engine vs reference)")
    p.add_argument("--voices", type=Path, help="folder of Bark .npz prompts (v2/...); default: random prompts")
    p.add_argument("--commit", help="commit being measured (default: git rev-parse, where there is a .git)")
    p.add_argument("--gpu-tests", default="auto", choices=["auto", "on", "off"],
                   help="run `pytest -m gpu tests/gpu` first (auto: on a CUDA device)")  # fmt: skip
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------- setup


def environment(device: str, commit: str | None) -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": commit or git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": device,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count)  # fmt: skip
        env["driver"] = nvidia_smi("driver_version")
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_models(shape: str, device: str, workdir: Path, voices: Path | None) -> dict[str, Any]:
    """fp32 and bf16 copies of random weights (end-of-speech never the argmax), with a tokenizer."""
    import torch

    from barkserve.config import ServerConfig
    from barkserve.models import LoadedModel, load_model
    from barkserve.testing.tiny import build_random_bark, make_tiny_checkpoint

    # The tiny checkpoint brings the tokenizer and the presets (real ones where `voices` is given).
    tiny = make_tiny_checkpoint(workdir / "tokenizer", presets_from=voices)
    tokenizer = load_model(str(tiny), ServerConfig(model=str(tiny), device="cpu", offline=True)).tokenizer
    model = build_random_bark(shape)
    eos = int(model.generation_config.semantic_config["eos_token_id"])
    with torch.no_grad():
        # Random logits are spread around 0 over 10,000 ids: a 0 is never the argmax, so greedy
        # decoding never stops early and every implementation makes exactly the requested tokens.
        model.semantic.lm_head.weight[eos].zero_()
    rate = int(model.generation_config.sample_rate)
    loaded = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        copy_ = (model if name == "float32" else copy.deepcopy(model)).to(device=device, dtype=dtype).eval()
        loaded[name] = LoadedModel(f"random {shape}", copy_, tokenizer, torch.device(device), dtype, rate)
    loaded["checkpoint"] = tiny
    return loaded


def load_voices(folder: Path | None, n: int) -> list[Any]:
    from barkserve.testing.tiny import random_voice
    from barkserve.voices import LANGUAGES, VoicePrompt

    if folder is not None and (folder / "v2").is_dir():
        names = [f"v2/{lang}_speaker_{i}" for i in range(10) for lang in LANGUAGES]
        paths = [(name, folder / f"{name}.npz") for name in names]
        found = [VoicePrompt.from_npz(path, name=name) for name, path in paths if path.is_file()]
        if found:
            return [found[i % len(found)] for i in range(n)]
    rng = np.random.default_rng(0)
    return [random_voice(rng, (200, 340), name=f"random{i}") for i in range(n)]


def make_request(seconds: float, voice: Any, seed: int) -> Any:
    from barkserve.engine.base import GenerationRequest
    from barkserve.options import SynthesisOptions

    ids = np.random.default_rng(seed).integers(1_000, 100_000, size=24)
    options = SynthesisOptions(text_temp=0, waveform_temp=0, seed=seed, max_duration_sec=seconds)
    return GenerationRequest(ids, voice, options)


def mixed_requests(lengths: tuple[float, ...], voices: list[Any], seed0: int) -> list[Any]:
    """Requests of different lengths and voices; the second row has no voice prompt."""
    return [make_request(sec, None if i == 1 else voices[i], seed0 + i) for i, sec in enumerate(lengths)]


def run_gpu_tests(out: Path) -> dict[str, Any]:
    """`pytest -m gpu tests/gpu` in a child process (the barkserve measured here), counted from its JUnit XML.

    `all_passed` needs every test to have run and passed (a skipped one did not see a GPU).
    """
    import barkserve

    xml = out / "gpu_tests.xml"
    xml.unlink(missing_ok=True)
    package_root = str(Path(barkserve.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={xml}",
        "tests/gpu",
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    counts = junit_counts(xml)
    all_passed = done.returncode == 0 and counts["tests"] > 0 and counts["passed"] == counts["tests"]
    output = done.stdout + done.stderr
    return {"command": "pytest -m gpu tests/gpu", "returncode": done.returncode, **counts, "all_passed": all_passed,
            "seconds": time.perf_counter() - started, "output_tail": output[-3000:]}  # fmt: skip


def junit_counts(xml: Path) -> dict[str, Any]:
    """Tests, passed, failed, errors and skipped of a JUnit XML report, and the ids of those that failed."""
    import xml.etree.ElementTree as ET

    counts: dict[str, Any] = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    if not xml.is_file():
        counts["errors"] = 1  # pytest did not get as far as writing its report
        return counts
    for case in ET.parse(xml).getroot().iter("testcase"):
        counts["tests"] += 1
        kinds = {child.tag for child in case}
        name = f"{case.get('classname')}::{case.get('name')}"
        if "failure" in kinds or "error" in kinds:
            counts["failed" if "failure" in kinds else "errors"] += 1
            counts["failures"].append(name)
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


# ---------------------------------------------------------------------------------------------- measure


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@contextmanager
def peak_memory(device: str) -> Iterator[dict[str, float]]:
    """Peak GPU memory allocated while the block runs, in MiB (CUDA only)."""
    out: dict[str, float] = {}
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield out
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20


def run_reference(ref: Any, requests: list[Any]) -> tuple[float, list[Any]]:
    """The reference serves requests one at a time, as `BarkModel.generate` does."""
    from barkserve.testing.check import reference_tokens

    started = time.perf_counter()
    out = [reference_tokens(ref, r) for r in requests]
    return time.perf_counter() - started, out


def run_engine(engine: Any, requests: list[Any]) -> tuple[float, list[Any]]:
    """All requests arrive together; returns the wall time until the last one is done, and the tasks."""
    started = time.perf_counter()
    tasks = [engine.submit(r) for r in requests]
    for task in tasks:
        task.wait()
    return time.perf_counter() - started, tasks


def engine_tokens(tasks: list[Any]) -> list[Any]:
    from barkserve.testing.check import task_tokens

    return [task_tokens(t) for t in tasks]


def first_divergence(a: np.ndarray, b: np.ndarray) -> int | None:
    """Index of the first position where two token arrays differ (None: equal)."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    if len(diff):
        return int(diff[0])
    return None if len(a) == len(b) else n


def compare_rows(got: list[Any], expected: list[Any]) -> list[dict[str, Any]]:
    """Per row and stage: equal, the first divergence, and the share of equal tokens."""
    rows = []
    for g, e in zip(got, expected, strict=True):
        row: dict[str, Any] = {"equal": g.same_tokens(e)}
        for stage in ("semantic", "coarse", "fine"):
            a, b = getattr(g, stage), getattr(e, stage)
            same = a.shape == b.shape
            row[stage] = {
                "first_divergence": first_divergence(a, b),
                "equal_share": float(np.mean(a == b)) if same and a.size else (1.0 if same else 0.0),
                "length": int(a.shape[-1]),
            }
        rows.append(row)
    return rows


def audio_sec(tokens: Any) -> float:
    from barkserve.bark import CODEC_FRAME_RATE_HZ

    return tokens.fine.shape[1] / CODEC_FRAME_RATE_HZ


def stage_rates(tokens: Any, seconds: dict[str, float]) -> dict[str, float]:
    """Tokens per second of each stage for one request (semantic tokens, coarse tokens, fine frames)."""
    counts = {"semantic": len(tokens.semantic), "coarse": len(tokens.coarse), "fine": tokens.fine.shape[1]}
    return {k: counts[k] / seconds[k] for k in counts if seconds.get(k)}


# ------------------------------------------------------------------------------------------------ check


class Check:
    """Runs the parts in order while the budget lasts; writes the JSON after each part."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.started = args, time.perf_counter()
        self.profile = PROFILES["smoke" if args.smoke else "full"]
        self.result: dict[str, Any] = {"profile": "smoke" if args.smoke else "full", "parts": {}, "errors": {}}
        args.out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def part(self, name: str, fn: Callable[[], dict[str, Any]], needed: bool = False) -> dict[str, Any] | None:
        """Run one part (unless the budget is spent and it is optional); record its result or error."""
        if not needed and self.elapsed() > self.args.budget_sec:
            self.result["parts"][name] = {"skipped": f"time budget of {self.args.budget_sec:.0f} s spent"}
            progress(f"{name}: skipped (budget)")
            self.save()
            return None
        progress(f"{name}: start at {self.elapsed():.0f} s")
        started = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # a failing part is recorded; the others still run
            self.result["errors"][name] = "".join(traceback.format_exception(exc))[-4000:]
            progress(f"{name}: FAILED {exc!r}")
            out = None
        else:
            out["part_sec"] = time.perf_counter() - started
            self.result["parts"][name] = out
            progress(f"{name}: done in {out['part_sec']:.1f} s")
        self.save()
        return out

    def save(self) -> None:
        self.result["elapsed_sec"] = self.elapsed()
        (self.args.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1, default=float) + "\n")


def progress(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns 1 when an fp32 token comparison failed or a needed part broke, else 0."""
    import torch

    from barkserve.config import EngineConfig
    from barkserve.engine.batched import BatchedEngine
    from barkserve.engine.reference import ReferenceEngine
    from barkserve.models import pick_device

    args = parse_args(argv)
    if args.smoke and args.device == "auto":
        args.device = "cpu"
    check = Check(args)
    profile = check.profile
    device = pick_device(args.device)
    shape = args.shape or profile["shape"]
    check.result["environment"] = environment(device, args.commit)
    check.result["shape"] = shape
    check.save()
    # The suite's GPU tests first: a failing one is the first thing the record should say.
    run_tests = args.gpu_tests == "on" or (args.gpu_tests == "auto" and device == "cuda")
    if run_tests:
        check.part("gpu_tests", lambda: run_gpu_tests(args.out), needed=True)
    else:
        check.result["parts"]["gpu_tests"] = {"skipped": f"not asked for on {device} (--gpu-tests {args.gpu_tests})"}
    n = len(profile["concurrent"])
    voices = load_voices(args.voices, max(n, len(profile["mixed"])))
    engines: dict[str, Any] = {}

    def engine(dtype: str, mode: str) -> Any:
        """The batched engine in one decode mode: eager, graphs (CUDA graphs) or compile (torch.compile)."""
        if (dtype, mode) not in engines:
            config = EngineConfig(max_batch_size=n, max_wait_ms=20, kernels="auto")
            engines[dtype, mode] = BatchedEngine(loaded[dtype], config, decode=mode)
        return engines[dtype, mode]

    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        loaded = build_models(shape, device, Path(tmp), args.voices)
        refs = {dtype: ReferenceEngine(loaded[dtype]) for dtype in ("float32", "bfloat16")}
        mixed = mixed_requests(profile["mixed"], voices, seed0=100)
        reference_fp32: list[Any] = []

        def warm(dtype: str, mode: str = "eager") -> float:
            """First calls pay one-off costs (allocations, kernels, compilation): returns their seconds."""
            started = time.perf_counter()
            run_engine(engine(dtype, mode), [make_request(0.3, voices[0], seed=0)])
            return time.perf_counter() - started

        def correctness_fp32() -> dict[str, Any]:
            warm("float32")
            ref_sec, expected = run_reference(refs["float32"], mixed)
            reference_fp32.extend(expected)
            eng_sec, tasks = run_engine(engine("float32", "eager"), mixed)
            rows = compare_rows(engine_tokens(tasks), expected)
            return {"rows": rows, "all_equal": all(r["equal"] for r in rows), "lengths_sec": profile["mixed"],
                    "reference_sec": ref_sec, "engine_sec": eng_sec}  # fmt: skip

        def correctness_bf16() -> dict[str, Any]:
            warm("bfloat16")
            _, expected = run_reference(refs["bfloat16"], mixed)
            _, tasks = run_engine(engine("bfloat16", "eager"), mixed)
            batched = engine_tokens(tasks)
            alone = [engine_tokens(run_engine(engine("bfloat16", "eager"), [r])[1])[0] for r in mixed]
            vs_ref = compare_rows(batched, expected)
            vs_alone = compare_rows(batched, alone)
            return {
                "vs_reference": vs_ref, "vs_reference_all_equal": all(r["equal"] for r in vs_ref),
                "batched_vs_alone": vs_alone, "batched_vs_alone_all_equal": all(r["equal"] for r in vs_alone),
            }  # fmt: skip

        def mode_tokens(dtype: str, mode: str) -> Callable[[], dict[str, Any]]:
            """A decode mode's tokens on the mixed batch against the eager engine's (and, in fp32, the
            reference's from correctness_fp32); in bf16 also its batched rows against each row alone."""

            def run() -> dict[str, Any]:
                compile_sec = warm(dtype, mode)
                _, eager = run_engine(engine(dtype, "eager"), mixed)
                _, comp = run_engine(engine(dtype, mode), mixed)
                rows = compare_rows(engine_tokens(comp), engine_tokens(eager))
                out: dict[str, Any] = {"warmup_incl_compile_sec": compile_sec, "vs_eager": rows,
                                       "all_equal": all(r["equal"] for r in rows)}  # fmt: skip
                if dtype == "bfloat16":
                    alone = [engine_tokens(run_engine(engine(dtype, mode), [r])[1])[0] for r in mixed]
                    vs_alone = compare_rows(engine_tokens(comp), alone)
                    out.update(batched_vs_alone=vs_alone, batched_vs_alone_all_equal=all(r["equal"] for r in vs_alone))
                if dtype == "float32" and reference_fp32:  # the reference's tokens of correctness_fp32
                    vs_ref = compare_rows(engine_tokens(comp), reference_fp32)
                    out.update(vs_reference=vs_ref, vs_reference_all_equal=all(r["equal"] for r in vs_ref))
                return out

            return run

        def batch1(kinds: list[str]) -> dict[str, Any]:
            """The batch-1 clip by each implementation, twice, the order reversed the second time."""
            request = make_request(profile["clip"], voices[0], seed=1)
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            cold = {}
            for kind in kinds:  # first run of these shapes: one-off costs (graph captures, kernel plans)
                if kind != "reference":
                    cold[kind] = run_engine(engine("bfloat16", kind), [request])[0]
                    progress(f"batch 1 {kind} cold: {cold[kind]:.2f} s")
            for repeat in range(2):
                for kind in kinds if repeat == 0 else kinds[::-1]:
                    if repeat and check.elapsed() > args.budget_sec:
                        continue
                    with peak_memory(device) as mem:
                        if kind == "reference":
                            sec, (tokens,) = run_reference(refs["bfloat16"], [request])
                            seconds = tokens.seconds
                        else:
                            sec, (task,) = run_engine(engine("bfloat16", kind), [request])
                            tokens, seconds = engine_tokens([task])[0], dict(task.stage_seconds)
                    runs[kind].append({"sec": sec, "audio_sec": audio_sec(tokens), "stage_sec": seconds,
                                       "tokens_per_sec": stage_rates(tokens, seconds), **mem})  # fmt: skip
                    progress(f"batch 1 {kind}: {sec:.2f} s for {audio_sec(tokens):.1f} s of audio")
            out: dict[str, Any] = {"clip_sec": profile["clip"], "dtype": "bfloat16", "runs": runs, "cold_sec": cold}
            for kind, rs in runs.items():
                secs = [r["sec"] for r in rs]
                out[kind] = {"sec_median": statistics.median(secs), "sec_min": min(secs), "sec_max": max(secs),
                             "realtime_x": rs[0]["audio_sec"] / statistics.median(secs)}  # fmt: skip
            for kind in kinds:
                if kind != "reference" and "reference" in out:
                    out[kind]["speedup_vs_reference"] = out["reference"]["sec_median"] / out[kind]["sec_median"]
            return out

        def concurrent(kinds: list[str]) -> dict[str, Any]:
            lengths = profile["concurrent"]
            requests = [make_request(sec, voices[i], seed=10 + i) for i, sec in enumerate(lengths)]
            out: dict[str, Any] = {"requests": len(requests), "lengths_sec": list(lengths), "dtype": "bfloat16"}
            tokens: dict[str, list[Any]] = {}
            for kind in [k for k in kinds if k != "reference"] + (["reference"] if "reference" in kinds else []):
                with peak_memory(device) as mem:
                    if kind == "reference":
                        sec, toks = run_reference(refs["bfloat16"], requests)
                    else:
                        sec, tasks = run_engine(engine("bfloat16", kind), requests)
                        toks = engine_tokens(tasks)
                        # The longest request's stage seconds: the engine's critical path per stage.
                        out[f"{kind}_longest_stage_sec"] = dict(tasks[int(np.argmax(lengths))].stage_seconds)
                total = sum(audio_sec(t) for t in toks)
                generated = sum(len(t.semantic) + len(t.coarse) + t.fine.shape[1] for t in toks)
                tokens[kind] = toks
                out[kind] = {"sec": sec, "audio_sec": total, "audio_sec_per_sec": total / sec,
                             "tokens_per_sec_all_stages": generated / sec, **mem}  # fmt: skip
                progress(f"{len(requests)} concurrent {kind}: {sec:.2f} s for {total:.1f} s of audio")
            for kind in kinds:
                if kind != "reference" and "reference" in out:
                    out[kind]["throughput_vs_reference"] = (
                        out[kind]["audio_sec_per_sec"] / out["reference"]["audio_sec_per_sec"]
                    )
            for kind in tokens:
                if kind not in ("eager", "reference") and "eager" in tokens:
                    out[f"{kind}_equals_eager"] = all(
                        a.same_tokens(b) for a, b in zip(tokens[kind], tokens["eager"], strict=True)
                    )
            return out

        def step_bench() -> dict[str, Any]:
            """Milliseconds per semantic decode step, bf16, at 1 and all rows, 500 positions in the cache:
            the decoder alone, and with what a stage step adds (head, logit rules, argmax, the host sync)."""
            from barkserve.engine import gpt
            from barkserve.engine.decode import Decoder
            from barkserve.engine.kv import KVCache
            from barkserve.engine.sampling import suppress_non_semantic

            model = loaded["bfloat16"].model.semantic
            cfg = model.config
            out: dict[str, Any] = {"positions": 500, "steps": 50}
            for mode in [m for m in args.step_modes.split(",") if m]:
                cache = KVCache(cfg.num_layers, n, cfg.num_heads, cfg.block_size, cfg.hidden_size // cfg.num_heads,
                                device=device, dtype=torch.bfloat16)  # fmt: skip
                decoder = Decoder(model, cache, mode)
                last = torch.randint(0, 10_000, (n,), device=device)
                for rows in sorted({1, n}):
                    cache.lengths[:] = [500] * rows
                    for full in (False, True):
                        for i in range(53):  # 3 warm-up steps (captures, compilation), 50 timed
                            if i == 3:
                                sync(device)
                                started = time.perf_counter()
                            hidden = decoder(last, rows)
                            if full:
                                logits = suppress_non_semantic(gpt.logits_at(model, hidden[:, 0]), 10_000)
                                logits.argmax(dim=-1).tolist()
                        sync(device)
                        key = f"{mode}_rows{rows}_{'stage_step' if full else 'decoder'}_ms"
                        out[key] = (time.perf_counter() - started) / 50 * 1000
                        progress(f"{key}: {out[key]:.3f}")
            return out

        def ttfa(kind: str) -> Callable[[], dict[str, Any]]:
            def run() -> dict[str, Any]:
                return measure_ttfa(loaded, engine("bfloat16", kind), profile["ttfa_chunk"])

            return run

        modes = [m for m in args.modes.split(",") if m]
        check.part("correctness_fp32", correctness_fp32, needed=True)
        for mode in modes:  # a mode whose fp32 tokens fail is still timed: the record says so
            check.part(f"{mode}_fp32_tokens", mode_tokens("float32", mode), needed=True)
        if not args.no_bf16_reference:
            check.part("correctness_bf16", correctness_bf16, needed=True)
        working = [m for m in modes if check.part(f"{m}_bf16_tokens", mode_tokens("bfloat16", m)) is not None]
        kinds = ["reference", "eager", *working]
        check.part("batch1_bf16", lambda: batch1([k for k in kinds if k in args.batch1.split(",")]))
        check.part("concurrent_bf16", lambda: concurrent([k for k in kinds if k in args.concurrent.split(",")]))
        check.part("ttfa_bf16", ttfa(working[0] if working else "eager"))
        check.part("step_bench_bf16", step_bench)
        for e in engines.values():
            e.close()
    summary = summarize(check.result)
    (args.out / "gpu_check.txt").write_text(summary + "\n")
    print(summary)
    parts = check.result["parts"]
    fp32 = [parts.get("correctness_fp32", {}).get("all_equal")]
    fp32 += [parts.get(f"{m}_fp32_tokens", {}).get("vs_reference_all_equal") for m in modes]
    # On a GPU every GPU test must pass; elsewhere (`--gpu-tests on` without one) they skip, and none may fail.
    tests = parts.get("gpu_tests", {})
    tests_ok = not run_tests or (
        tests.get("all_passed") if device == "cuda" else tests.get("failed") == tests.get("errors") == 0
    )
    return 0 if all(fp32) and tests_ok and not check.result["errors"] else 1


def measure_ttfa(loaded: dict[str, Any], engine: Any, chunk_sec: float) -> dict[str, Any]:
    """Time to first audio of a streamed 3-chunk text (Synthesizer.stream, as /v1/audio/speech runs it)
    against the total, and against the first chunk synthesized alone."""
    from barkserve.config import ServerConfig
    from barkserve.models import ModelRegistry
    from barkserve.synthesizer import Synthesizer

    model = loaded["bfloat16"]
    checkpoint = str(loaded["checkpoint"])
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(model=checkpoint, device=str(model.device), offline=True, voices_dir=Path(tmp))
        registry = ModelRegistry(config, loader=lambda name, cfg: model)
        synth = Synthesizer(config, registry, engine_factory=lambda m: engine)
        options = {"seed": 1, "text_temp": 0, "waveform_temp": 0, "max_duration_sec": chunk_sec}
        first = "Hello there."
        more = [f"This is sentence number {i}, long enough to be a chunk of its own." for i in (1, 2)]
        text = " ".join([first, *more])
        runs: dict[str, list[float]] = {"alone": [], "ttfa": [], "total": []}
        for repeat in range(3):
            for case in ("alone", "stream") if repeat % 2 == 0 else ("stream", "alone"):
                started = time.perf_counter()
                info, pieces = synth.stream(text if case == "stream" else first, voice="v2/en_speaker_1",
                                            options=options, lookahead=2)  # fmt: skip
                first_at = None
                for _ in pieces:
                    first_at = first_at or time.perf_counter()
                end = time.perf_counter()
                if case == "alone":
                    runs["alone"].append(end - started)
                else:
                    runs["ttfa"].append((first_at or end) - started)
                    runs["total"].append(end - started)
                    chunks = len(info.chunks)
        med = {k: statistics.median(v[1:] if len(v) > 1 else v) for k, v in runs.items()}  # repeat 0 warms up
    return {"chunk_sec": chunk_sec, "chunks": chunks, "runs": runs, "median_excl_first": med,
            "ttfa_over_first_alone": med["ttfa"] / med["alone"]}  # fmt: skip


def summarize(result: dict[str, Any]) -> str:
    """A short text table of what ran."""
    env, parts = result.get("environment", {}), result["parts"]
    lines = [
        f"barkserve gpu_check ({result['profile']}, random {result.get('shape')} weights) "
        f"on {env.get('gpu') or env.get('cpu')}, driver {env.get('driver')}, torch {env.get('torch')} "
        f"(CUDA {env.get('torch_cuda')}), transformers {env.get('transformers')}, commit {env.get('commit')}, "
        f"{env.get('date')}, {result['elapsed_sec']:.0f} s",
    ]
    g = parts.get("gpu_tests")
    if g and "tests" in g:
        failed = f" ({', '.join(g['failures'])})" if g["failures"] else ""
        lines.append(f"GPU tests (pytest -m gpu): {g['passed']} passed, {g['failed']} failed, {g['errors']} errors, "
                     f"{g['skipped']} skipped of {g['tests']}{failed}: all passed {g['all_passed']}")  # fmt: skip
    c = parts.get("correctness_fp32")
    if c:
        lines.append(f"fp32 engine == BarkModel.generate, every row of a mixed batch of {len(c['rows'])}: "
                     f"{c['all_equal']}")  # fmt: skip
    c = parts.get("correctness_bf16")
    if c:
        firsts = [r["semantic"]["first_divergence"] for r in c["vs_reference"]]
        lines.append(f"bf16 engine == reference: {c['vs_reference_all_equal']} (semantic first divergence per row "
                     f"{firsts}); batched == alone: {c['batched_vs_alone_all_equal']}")  # fmt: skip
    for name in [k for k in parts if k.endswith("_tokens")]:
        c = parts.get(name)
        if c and "all_equal" in c:
            extra = f", == reference: {c['vs_reference_all_equal']}" if "vs_reference_all_equal" in c else ""
            if "batched_vs_alone_all_equal" in c:
                extra += f", batched == alone: {c['batched_vs_alone_all_equal']}"
            lines.append(f"{name}: == eager {c['all_equal']}{extra}; warm-up incl. compile "
                         f"{c['warmup_incl_compile_sec']:.0f} s")  # fmt: skip
    b = parts.get("batch1_bf16")
    if b and "runs" in b:
        for kind in b["runs"]:
            k = b[kind]
            vs = f", {k['speedup_vs_reference']:.1f}x reference" if "speedup_vs_reference" in k else ""
            lines.append(f"batch 1 {b['clip_sec']} s bf16 {kind}: {k['sec_median']:.2f} s "
                         f"({k['sec_min']:.2f}-{k['sec_max']:.2f}), {k['realtime_x']:.1f}x real time{vs}")  # fmt: skip
    c = parts.get("concurrent_bf16")
    if c and "requests" in c:
        for kind in ("reference", "eager", "graphs", "compile"):
            if kind in c:
                k = c[kind]
                vs = f", {k['throughput_vs_reference']:.1f}x reference" if "throughput_vs_reference" in k else ""
                lines.append(f"{c['requests']} concurrent bf16 {kind}: {k['sec']:.2f} s, "
                             f"{k['audio_sec_per_sec']:.1f} audio-s/s{vs}")  # fmt: skip
    t = parts.get("ttfa_bf16")
    if t and "median_excl_first" in t:
        m = t["median_excl_first"]
        lines.append(f"TTFA streamed {t['chunks']} chunks of {t['chunk_sec']} s: {m['ttfa']:.3f} s "
                     f"(first chunk alone {m['alone']:.3f} s, total {m['total']:.3f} s)")  # fmt: skip
    for name, part in parts.items():
        if isinstance(part.get("skipped"), str):
            lines.append(f"{name}: skipped ({part['skipped']})")
    for name in result["errors"]:
        lines.append(f"{name}: FAILED (see errors in gpu_check.json)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
