"""GPU check: the batched engine on a GPU, correct first (tokens against `BarkModel.generate`), then fast.

One command on the GPU machine (it fits one 10-minute call; see "Run" below):

1. environment: GPU, driver, torch / CUDA / transformers / flash-attn / accelerate versions, commit;
   then the test suite's GPU tests (`pytest -m gpu tests/gpu`, in a child process), their counts and
   failures recorded as `parts.gpu_tests` (on a CUDA device by default; `--gpu-tests on|off`);
2. correctness, greedy, on a mixed batch (lengths and voices differ, one row without a voice):
   fp32: every row's semantic, coarse and fine tokens against `BarkModel.generate` run alone, for the
   eager engine and for each of `--modes` ("graphs": CUDA graphs; "fused": the inductor-compiled step
   inside the graphs); bf16: how the engine's tokens differ from the reference's (first divergence per
   stage), and whether batched rows equal the same requests run alone;
3. speed in bf16: a batch-1 clip (10 s) by the reference and each engine mode; the reference run the
   ways the Bark documentation tells users to (`docs_reference`: float16, Flash Attention 2 where the
   `flash_attn` package imports, `enable_cpu_offload()`, and their combination) with the engine's
   ratios against the fastest of them and against plain `generate`; 16 and 64 concurrent requests of
   mixed lengths (also 128 on an H200), the reference's throughput served one at a time beside them;
   milliseconds and kernels per decode step (torch.profiler); time to first audio of a streamed request;
4. the issue's targets as pass/fail fields (`targets` in the JSON, last lines of the summary): batch 1
   at least 20x real time, 64 concurrent at least 120 audio-s/s, fp32 tokens equal in every mode.

Random weights with the real bark-small shapes (`--shape bark` for bark-large's), end-of-speech
pinned off so every implementation makes exactly the requested number of tokens. Parts run in order
of importance while `--budget-sec` lasts; each part is written to `OUT/gpu_check.json` as soon as it
ends, so a run cut short keeps what it measured. `--smoke` runs every part on the tiny shapes on the
CPU (the test suite does). Prints a short summary last and writes it to `OUT/gpu_check.txt`.

Run: `python benchmarks/gpu_check.py --out DIR [--smoke] [--budget-sec S] [--commit SHA]`. On the GPU
machine, from the repository root, as one line (with the git-ignored `tests/fixtures/bark-voices` and
`.whl` folders carried into the working tree; a 590 s limit leaves the last part room in 10 minutes):

    python -m pip install -q --no-index --no-deps .whl/*.whl; PYTHONPATH=src python benchmarks/gpu_check.py
    --out $OUT --voices tests/fixtures/bark-voices --budget-sec 400

The GPU machine reaches no package registry. `.whl` holds what it lacks: `accelerate` (for
`enable_cpu_offload`) and `psutil`, its one dependency that transformers does not bring, fetched here
with `pip download accelerate psutil --no-deps -d .whl --only-binary=:all: --python-version 3.12
--platform manylinux2014_x86_64`. `flash-attn` has no wheel on PyPI for most torch/CUDA builds (it is
an sdist that compiles CUDA code, or fetches a prebuilt wheel from GitHub, which that machine cannot
reach): where it does not import, the check records "flash-attn not installed" for the Flash
Attention variants and runs the others. A second run on the same warm machine reuses inductor's
compiled kernels (its cache in /tmp), so the fused mode's compilation is paid once.
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
    # clip: batch-1 seconds; mixed: the correctness batch; concurrency: how many requests arrive
    # together (their lengths spread evenly over `lengths`); serial: requests the reference serves one
    # at a time for its throughput (a one-at-a-time server's throughput does not depend on the queue).
    "full": {"shape": "bark-small", "clip": 10.0, "mixed": (0.6, 1.3, 2.1, 0.9, 1.7, 2.5),
             "concurrency": (16, 64), "lengths": (0.5, 3.0), "serial": 4, "ttfa_chunk": 2.0},
    "smoke": {"shape": "tiny", "clip": 0.6, "mixed": (0.3, 0.5, 0.4), "concurrency": (2, 4), "lengths": (0.2, 0.5),
              "serial": 2, "ttfa_chunk": 0.3},
}  # fmt: skip
# The Bark documentation's ways to run `BarkModel.generate` faster or in less memory (transformers'
# Bark page and the "Optimizing Bark" blog): name -> (float16, Flash Attention 2, enable_cpu_offload).
DOCS_VARIANTS = {
    "fp16": (True, False, False),
    "fp16_fa2": (True, True, False),
    "offload": (False, False, True),
    "fp16_fa2_offload": (True, True, True),
}
# The targets (H100, bf16, bark-small shapes).
TARGET_REALTIME_X = 20.0
TARGET_CONCURRENCY, TARGET_AUDIO_SEC_PER_SEC = 64, 120.0
STAGES = ("semantic", "coarse", "fine", "codec")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.txt")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, every part (the test suite)")
    p.add_argument("--shape", help="random weights' shapes: bark-small (default), bark (large) or tiny")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--budget-sec", type=float, default=420.0, help="start no new part after this many seconds")
    p.add_argument("--modes", default="graphs,fused", help="engine decode modes checked besides eager")
    p.add_argument("--batch1", default="reference,eager,graphs,fused", help="implementations timed at batch 1")
    p.add_argument("--concurrent", default="reference,graphs,fused", help="implementations timed together")
    p.add_argument(
        "--concurrency",
        default="auto",
        help="comma-separated numbers of concurrent requests (auto: 16,64, and 128 on an H200)",
    )
    p.add_argument("--docs", default=",".join(DOCS_VARIANTS), help="documented reference variants timed")
    p.add_argument("--step-modes", default="eager,graphs,fused", help="decode modes of the per-step timing")
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

    from barkserve.testing.provenance import git_commit

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
        "flash_attn": package_version("flash_attn"),
        "accelerate": package_version("accelerate"),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count)  # fmt: skip
        env["driver"] = nvidia_smi("driver_version")
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def package_version(name: str) -> str:
    """The installed version of an optional package, or "not installed"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name.replace("_", "-"))
    except PackageNotFoundError:
        return "not installed"


def nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


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


def spread_requests(count: int, lengths: tuple[float, float], voices: list[Any], seed0: int) -> list[Any]:
    """`count` requests whose lengths spread evenly over `lengths` (seconds), each with its own voice."""
    secs = np.linspace(lengths[0], lengths[1], count).round(2)
    return [make_request(float(sec), voices[i % len(voices)], seed0 + i) for i, sec in enumerate(secs)]


def concurrency_levels(choice: str, profile: dict[str, Any], env: dict[str, Any]) -> list[int]:
    """The numbers of concurrent requests timed: the profile's, plus 128 on an H200 (its 141 GB hold
    128 rows' caches beside everything else), or the comma-separated `choice`."""
    if choice != "auto":
        return sorted({int(c) for c in choice.split(",") if c})
    levels = list(profile["concurrency"])
    if "H200" in str(env.get("gpu", "")) and profile["shape"] != "tiny":
        levels.append(128)
    return levels


def run_docs_variant(folder: Path, name: str, device: str, clip: list[Any], serial: list[Any]) -> dict[str, Any]:
    """One documented way to run `BarkModel.generate`: `from_pretrained(torch_dtype=torch.float16,
    attn_implementation="flash_attention_2")` and `model.enable_cpu_offload()` as `DOCS_VARIANTS` says,
    timed on the batch-1 clip and on `serial` requests served one at a time. Says why where it cannot run."""
    import torch
    from transformers import AutoTokenizer, BarkModel
    from transformers.utils import is_flash_attn_2_available

    from barkserve.engine.reference import ReferenceEngine
    from barkserve.models import LoadedModel

    half, fa2, offload = DOCS_VARIANTS[name]
    if fa2 and not is_flash_attn_2_available():
        return {"skipped": "flash-attn not installed (PyPI has no wheel of it for most torch/CUDA builds)"}
    if fa2 and device != "cuda":
        return {"skipped": "Flash Attention 2 needs a CUDA GPU"}
    if offload and device != "cuda":
        return {"skipped": "enable_cpu_offload() moves stages onto a GPU: it needs a CUDA device"}
    dtype = torch.float16 if half else torch.float32
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if fa2:
        kwargs["attn_implementation"] = "flash_attention_2"
    model = BarkModel.from_pretrained(folder, **kwargs)
    if offload:
        try:
            model.enable_cpu_offload()
        except ImportError as exc:
            return {"skipped": f"enable_cpu_offload() needs accelerate: {exc}"}
    else:
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rate = int(model.generation_config.sample_rate)
    ref = ReferenceEngine(LoadedModel(f"docs {name}", model.eval(), tokenizer, torch.device(device), dtype, rate))
    out: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "flash_attention_2": fa2,
                           "cpu_offload": offload, "attention": model.config._attn_implementation}  # fmt: skip
    run_reference(ref, [make_request(0.3, clip[0].voice, seed=0)])  # warm-up: first-call costs
    with peak_memory(device) as mem:
        sec, (tokens,) = run_reference(ref, clip)
    out["batch1"] = {"sec": sec, "audio_sec": audio_sec(tokens), "realtime_x": audio_sec(tokens) / sec, **mem}
    sec, toks = run_reference(ref, serial)
    total = sum(audio_sec(t) for t in toks)
    out["serial"] = {"requests": len(serial), "sec": sec, "audio_sec": total, "audio_sec_per_sec": total / sec}
    progress(f"docs {name}: batch 1 {out['batch1']['realtime_x']:.2f}x real time, "
             f"one at a time {out['serial']['audio_sec_per_sec']:.2f} audio-s/s")  # fmt: skip
    del ref, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def step_kernels(decoder: Any, last: Any, rows: int, device: str) -> dict[str, Any]:
    """What one decode step of `rows` rows launches, counted by torch.profiler on the step uncaptured:
    GPU kernels (and copies) on CUDA; everywhere the innermost operators on the CPU (on a CPU the
    compiled step's own C++ kernels are not operators: what it counts there is the work left outside
    them, e.g. matrix products, against every operator of the eager step)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    rows_b, span = decoder.bucket(rows) if decoder.mode in ("graphs", "fused") else (rows, 0)
    if decoder.mode in ("graphs", "fused"):
        lengths = decoder.cache.lengths[:rows] + [0] * (rows_b - rows)
        decoder.positions[:rows_b].copy_(torch.tensor(lengths))

        def step() -> Any:
            args = (decoder.model, last[:rows_b], decoder.positions[:rows_b], decoder.cache, span)
            return decoder.step(*args)
    else:

        def step() -> Any:
            return decoder(last, rows)

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync(device)
    events = prof.events()
    gpu = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    cpu_ops = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU and not e.cpu_children]
    out: dict[str, Any] = {"rows": rows_b, "cpu_ops": len(cpu_ops)}
    if device == "cuda":
        out["gpu_kernels"] = len(gpu)
    return out


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
        self.result["comparisons"] = comparisons(self.result["parts"])
        self.result["targets"] = targets(self.result)
        (self.args.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1, default=float) + "\n")


def engine_kinds(part: dict[str, Any]) -> list[str]:
    """The engine modes a speed part timed (every key that holds a timing, but the reference)."""
    timed = ("sec_median", "audio_sec_per_sec")
    return [k for k, v in part.items() if k != "reference" and isinstance(v, dict) and any(t in v for t in timed)]


def comparisons(parts: dict[str, Any]) -> dict[str, Any]:
    """The engine's ratios against plain `generate` and against the fastest documented way to run it:
    batch-1 speed (seconds of the clip) and throughput one at a time against the engine's concurrent."""
    docs = {k: v for k, v in parts.get("docs_reference", {}).get("variants", {}).items() if "batch1" in v}
    out: dict[str, Any] = {}
    b = parts.get("batch1_bf16", {})
    if "reference" in b and docs:
        fastest = min(docs, key=lambda k: docs[k]["batch1"]["sec"])
        base = docs[fastest]["batch1"]["sec"]
        out["batch1"] = {
            "fastest_docs_variant": fastest,
            "fastest_docs_sec": base,
            "plain_generate_sec": b["reference"]["sec_median"],
            **{f"{k}_vs_fastest_docs": base / b[k]["sec_median"] for k in engine_kinds(b)},
            **{f"{k}_vs_plain_generate": b["reference"]["sec_median"] / b[k]["sec_median"] for k in engine_kinds(b)},
        }
    c = parts.get("concurrent_bf16", {})
    if docs and "levels" in c:
        fastest = max(docs, key=lambda k: docs[k]["serial"]["audio_sec_per_sec"])
        base = docs[fastest]["serial"]["audio_sec_per_sec"]
        out["concurrent"] = {"fastest_docs_variant": fastest, "fastest_docs_audio_sec_per_sec": base}
        for level, row in c["levels"].items():
            for kind in engine_kinds(row):
                out["concurrent"][f"{kind}_at_{level}_vs_fastest_docs"] = row[kind]["audio_sec_per_sec"] / base
    return out


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with what was measured and `met` (None: not measured in this run).
    They are set for bark-small shapes in bf16 on an H100: `applies` says whether this run is one."""
    parts = result["parts"]
    env = result.get("environment", {})
    applies = result.get("shape") == "bark-small" and env.get("device") == "cuda"
    out: dict[str, Any] = {"applies": applies}
    b = parts.get("batch1_bf16", {})
    best = max(engine_kinds(b), key=lambda k: b[k]["realtime_x"], default=None)
    measured = b[best]["realtime_x"] if best else None
    out["batch1_realtime_x"] = {"target": TARGET_REALTIME_X, "measured": measured, "by": best,
                                "met": None if measured is None else measured >= TARGET_REALTIME_X}  # fmt: skip
    row = parts.get("concurrent_bf16", {}).get("levels", {}).get(str(TARGET_CONCURRENCY), {})
    best = max(engine_kinds(row), key=lambda k: row[k]["audio_sec_per_sec"], default=None)
    measured = row[best]["audio_sec_per_sec"] if best else None
    out[f"concurrent{TARGET_CONCURRENCY}_audio_sec_per_sec"] = {
        "target": TARGET_AUDIO_SEC_PER_SEC, "measured": measured, "by": best,
        "met": None if measured is None else measured >= TARGET_AUDIO_SEC_PER_SEC,
    }  # fmt: skip
    fp32 = {"eager": parts.get("correctness_fp32", {}).get("all_equal")}
    for name, part in parts.items():
        if name.endswith("_fp32_tokens"):
            fp32[name.removesuffix("_fp32_tokens")] = part.get("vs_reference_all_equal")
    for name in result.get("errors", {}):  # a comparison that broke is not a pass
        if name == "correctness_fp32" or name.endswith("_fp32_tokens"):
            fp32[name.removesuffix("_fp32_tokens").replace("correctness_fp32", "eager")] = False
    measured_modes = {k: v for k, v in fp32.items() if v is not None}
    out["fp32_tokens_equal"] = {"target": "every row, every mode", "measured": measured_modes,
                                "met": all(measured_modes.values()) if measured_modes else None}  # fmt: skip
    return out


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
    levels = concurrency_levels(args.concurrency, profile, check.result["environment"])
    n = max(levels)
    voices = load_voices(args.voices, max(n, len(profile["mixed"])))
    engines: dict[tuple[str, str], Any] = {}

    def engine(dtype: str, mode: str) -> Any:
        """The batched engine in one decode mode: eager, graphs (CUDA graphs), fused (the inductor-compiled
        step inside them) or compile (torch.compile). fp32 engines serve the correctness batch only."""
        if (dtype, mode) not in engines:
            rows = len(profile["mixed"]) if dtype == "float32" else n  # KV caches sized for what they serve
            # A compiled step compiles its own Linear layers (oneDNN's are for the eager CPU step).
            kernels = "torch" if mode in ("fused", "compile") else "auto"
            config = EngineConfig(max_batch_size=rows, max_wait_ms=20, kernels=kernels)
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
            """Each concurrency level's requests arriving together, per engine mode; beside them the
            reference's throughput serving `serial` requests of the same lengths one at a time."""
            out: dict[str, Any] = {"dtype": "bfloat16", "levels": {}}
            if "reference" in kinds:
                serial = spread_requests(profile["serial"], profile["lengths"], voices, seed0=500)
                sec, toks = run_reference(refs["bfloat16"], serial)
                total = sum(audio_sec(t) for t in toks)
                out["reference"] = {"requests": len(serial), "sec": sec, "audio_sec": total,
                                    "audio_sec_per_sec": total / sec, "served": "one at a time"}  # fmt: skip
                progress(f"reference one at a time: {total / sec:.2f} audio-s/s")
            for level in levels:
                if level != levels[0] and check.elapsed() > args.budget_sec:
                    out["levels"][str(level)] = {"skipped": f"time budget of {args.budget_sec:.0f} s spent"}
                    continue
                requests = spread_requests(level, profile["lengths"], voices, seed0=10)
                row: dict[str, Any] = {"requests": level, "lengths_sec": [r.options.max_duration_sec for r in requests]}
                tokens: dict[str, list[Any]] = {}
                for kind in [k for k in kinds if k != "reference"]:
                    with peak_memory(device) as mem:
                        sec, tasks = run_engine(engine("bfloat16", kind), requests)
                        toks = engine_tokens(tasks)
                    # The longest request's stage seconds: the engine's critical path per stage.
                    longest = dict(tasks[int(np.argmax(row["lengths_sec"]))].stage_seconds)
                    total = sum(audio_sec(t) for t in toks)
                    generated = sum(len(t.semantic) + len(t.coarse) + t.fine.shape[1] for t in toks)
                    tokens[kind] = toks
                    row[kind] = {"sec": sec, "audio_sec": total, "audio_sec_per_sec": total / sec,
                                 "tokens_per_sec_all_stages": generated / sec, "longest_stage_sec": longest,
                                 **mem}  # fmt: skip
                    if "reference" in out:
                        row[kind]["throughput_vs_reference"] = total / sec / out["reference"]["audio_sec_per_sec"]
                    progress(f"{level} concurrent {kind}: {sec:.2f} s for {total:.1f} s of audio")
                for kind in tokens:
                    if kind != "eager" and "eager" in tokens:
                        row[f"{kind}_equals_eager"] = all(
                            a.same_tokens(b) for a, b in zip(tokens[kind], tokens["eager"], strict=True)
                        )
                out["levels"][str(level)] = row
                check.result["parts"]["concurrent_bf16"] = out  # a level at a time, for a run cut short
                check.save()
            return out

        def docs_reference(names: list[str]) -> dict[str, Any]:
            """`BarkModel.generate` loaded and run the ways the Bark docs tell users, on the batch-1 clip
            and served one at a time on the `serial` requests; each variant as far as this machine allows."""
            folder = Path(tmp) / "checkpoint"
            loaded["float32"].model.save_pretrained(folder)  # the same random weights, loaded as a user would
            loaded["float32"].tokenizer.save_pretrained(folder)
            clip = make_request(profile["clip"], voices[0], seed=1)
            serial = spread_requests(profile["serial"], profile["lengths"], voices, seed0=500)
            out: dict[str, Any] = {"variants": {}}
            for name in names:
                out["variants"][name] = run_docs_variant(folder, name, device, [clip], serial)
                check.result["parts"]["docs_reference"] = out  # a variant at a time, for a run cut short
                check.save()
            return out

        def step_bench() -> dict[str, Any]:
            """Milliseconds per semantic decode step, bf16, at 1 and all rows, 500 positions in the cache:
            the decoder alone, and with what a stage step adds (head, logit rules, argmax, the host sync);
            and the kernels one step launches (the step uncaptured, under torch.profiler)."""
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
                    decoder(last, rows)  # compiles (fused) before the count
                    out[f"{mode}_rows{rows}_kernels"] = step_kernels(decoder, last, rows, device)
                    progress(f"{mode} rows {rows}: {out[f'{mode}_rows{rows}_kernels']}")
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
        check.result["concurrency"] = levels
        check.part("correctness_fp32", correctness_fp32, needed=True)
        for mode in modes:  # a mode whose fp32 tokens fail is still timed: the record says so
            check.part(f"{mode}_fp32_tokens", mode_tokens("float32", mode), needed=True)
        if not args.no_bf16_reference:
            check.part("correctness_bf16", correctness_bf16, needed=True)
        working = [m for m in modes if check.part(f"{m}_bf16_tokens", mode_tokens("bfloat16", m)) is not None]
        kinds = ["reference", "eager", *working]
        for key in [k for k in engines if k[0] == "float32"]:  # fp32 engines served correctness only
            engines.pop(key).close()
        check.part("batch1_bf16", lambda: batch1([k for k in kinds if k in args.batch1.split(",")]))
        check.part("concurrent_bf16", lambda: concurrent([k for k in kinds if k in args.concurrent.split(",")]))
        check.part("docs_reference", lambda: docs_reference([d for d in args.docs.split(",") if d]))
        check.part("step_bench_bf16", step_bench)
        check.part("ttfa_bf16", ttfa("fused" if "fused" in working else working[0] if working else "eager"))
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
    if c and "levels" in c:
        if "reference" in c:
            lines.append(f"reference bf16 served one at a time ({c['reference']['requests']} requests): "
                         f"{c['reference']['audio_sec_per_sec']:.2f} audio-s/s")  # fmt: skip
        for level, row in c["levels"].items():
            for kind in engine_kinds(row):
                k = row[kind]
                vs = f", {k['throughput_vs_reference']:.1f}x reference" if "throughput_vs_reference" in k else ""
                lines.append(f"{level} concurrent bf16 {kind}: {k['sec']:.2f} s, "
                             f"{k['audio_sec_per_sec']:.1f} audio-s/s{vs}")  # fmt: skip
    d = parts.get("docs_reference")
    if d and "variants" in d:
        for name, v in d["variants"].items():
            if "batch1" in v:
                lines.append(f"docs reference {name} ({v['dtype']}, attention {v['attention']}, offload "
                             f"{v['cpu_offload']}): batch 1 {v['batch1']['realtime_x']:.2f}x real time, one at a "
                             f"time {v['serial']['audio_sec_per_sec']:.2f} audio-s/s")  # fmt: skip
            else:
                lines.append(f"docs reference {name}: {v.get('skipped')}")
    for what, ratios in result.get("comparisons", {}).items():
        shown = ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items() if k.endswith(("_docs", "_generate")))
        lines.append(f"{what} ratios (the fastest documented way: {ratios['fastest_docs_variant']}): {shown}")
    sb = parts.get("step_bench_bf16")
    if sb and "steps" in sb:
        counts = {k.removesuffix("_kernels"): v for k, v in sb.items() if k.endswith("_kernels")}
        shown = ", ".join(f"{k} {v.get('gpu_kernels', v['cpu_ops'])}" for k, v in counts.items())
        lines.append(f"per decode step, {'GPU kernels' if env.get('device') == 'cuda' else 'CPU operators'}: {shown}")
    t = parts.get("ttfa_bf16")
    if t and "median_excl_first" in t:
        m = t["median_excl_first"]
        lines.append(f"TTFA streamed {t['chunks']} chunks of {t['chunk_sec']} s: {m['ttfa']:.3f} s "
                     f"(first chunk alone {m['alone']:.3f} s, total {m['total']:.3f} s)")  # fmt: skip
    t = result.get("targets", {})
    for name in ("batch1_realtime_x", f"concurrent{TARGET_CONCURRENCY}_audio_sec_per_sec", "fp32_tokens_equal"):
        if name in t:
            verdict = {True: "PASS", False: "FAIL", None: "not measured"}[t[name]["met"]]
            where = "" if t["applies"] else " (targets are for bark-small bf16 on a GPU: this run is not one)"
            lines.append(f"target {name} ({t[name]['target']}): {verdict}, measured {t[name]['measured']}"
                         f"{' by ' + str(t[name]['by']) if t[name].get('by') else ''}{where}")  # fmt: skip
    for name, part in parts.items():
        if isinstance(part.get("skipped"), str):
            lines.append(f"{name}: skipped ({part['skipped']})")
    for name in result["errors"]:
        lines.append(f"{name}: FAILED (see errors in gpu_check.json)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
