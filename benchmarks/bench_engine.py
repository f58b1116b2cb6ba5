"""Benchmark: the batched engine against `BarkModel.generate` on the same weights, same token counts.

Random weights with the real bark-small shapes (or `--model`), greedy decoding, and an end-of-speech
logit pinned to 0 on random weights, so both implementations make exactly the requested number of
tokens. Prints a table and one JSON line. Run: `python benchmarks/bench_engine.py [--quick] [--model PATH]`
(`make bench` runs the quick profile).

`--overlap` compares the engine with the fine stage and codec on their worker (`overlap_fine`, the
default) and inside the decode loop, on the same staggered requests: the longest pause of the decode
steps while rows waited to decode, and the latency of a request that arrives just as the first
request enters the fine stage (engine only; tokens compared between the two).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.bark import CODEC_FRAME_RATE_HZ
from barkserve.config import EngineConfig
from barkserve.engine.base import GenerationRequest
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.reference import ReferenceEngine
from barkserve.models import LoadedModel
from barkserve.options import SynthesisOptions
from barkserve.testing.check import StageTokens, reference_tokens, task_tokens
from barkserve.testing.tiny import build_random_bark, random_voice
from barkserve.voices import LANGUAGES, VoicePrompt

PROFILES = {
    # clips: batch-1 lengths (s); concurrent: lengths (s) of requests that arrive together.
    "full": {"clips": (2.0, 10.0), "concurrent": tuple(np.linspace(1.0, 6.0, 8).round(2))},
    "quick": {"clips": (1.0,), "concurrent": (0.4, 0.8)},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_engine.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint folder or hub id; default: random weights, bark-small shapes")
    p.add_argument("--quick", action="store_true", help="short profile (under 4 minutes on 2 CPU cores)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--concurrent", type=int, help="number of concurrent requests (default 8; 16 on CUDA)")
    p.add_argument("--quantize", choices=["int8"], help="engine only: dynamic int8 Linear layers (changes outputs)")
    p.add_argument("--kernels", default="auto", choices=["auto", "packed", "torch"],
                   help="engine only: CPU Linear layers via oneDNN (auto), a packed copy or torch")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="engine only: torch.compile the decode step")
    p.add_argument("--no-reference", action="store_true", help="time the engine only (no ratios, no check)")
    p.add_argument("--no-voice", action="store_true", help="batch-1 clips without a voice prompt")
    p.add_argument("--voices", type=Path, help="folder of Bark .npz prompts (default: ../shared fixtures)")
    p.add_argument("--overlap", action="store_true", help="compare overlap_fine on and off (engine only)")
    p.add_argument("--serial-first", action="store_true", help="--overlap: run the serial mode first")
    return p.parse_args(argv)


def build_loaded(args: argparse.Namespace) -> LoadedModel:
    """Load `--model`, or build random bark-small weights whose end-of-speech logit is always 0."""
    import torch

    from barkserve.config import ServerConfig
    from barkserve.models import load_model, pick_device

    device = pick_device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.model:
        return load_model(args.model, ServerConfig(model=args.model, device=device, dtype=args.dtype, offline=True))
    model = build_random_bark("bark-small")
    eos = int(model.generation_config.semantic_config["eos_token_id"])
    with torch.no_grad():
        # Random logits are spread around 0 over 10,000 ids: a 0 is never the argmax, so greedy
        # decoding never stops early and both implementations make exactly the requested tokens.
        model.semantic.lm_head.weight[eos].zero_()
    model.to(device=device, dtype=dtype).eval()
    rate = int(model.generation_config.sample_rate)
    return LoadedModel("random bark-small", model, None, torch.device(device), dtype, rate)


def load_voices(folder: Path | None, n: int) -> list[VoicePrompt]:
    """n different voices: real presets where the fixture folder exists, else random ones."""
    here = Path(__file__).resolve()
    candidates = [folder] if folder else [p / "shared/fixtures/bark-voices" for p in here.parents[:5]]
    for root in candidates:
        if root is not None and (root / "v2").is_dir():
            names = [f"v2/{lang}_speaker_{i}" for i in range(10) for lang in LANGUAGES][:n]
            return [VoicePrompt.from_npz(root / f"{name}.npz", name=name) for name in names]
    rng = np.random.default_rng(0)
    return [random_voice(rng, (200, 340), name=f"random{i}") for i in range(n)]


def make_request(sec: float, voice: VoicePrompt | None, seed: int) -> GenerationRequest:
    ids = np.random.default_rng(seed).integers(1_000, 100_000, size=24)
    return GenerationRequest(
        ids, voice, SynthesisOptions(text_temp=0, waveform_temp=0, seed=seed, max_duration_sec=sec)
    )


def audio_sec(tokens: StageTokens) -> float:
    return tokens.fine.shape[1] / CODEC_FRAME_RATE_HZ


class PeakMemory:
    """Peak GPU memory (CUDA) or peak process RSS (sampled every 10 ms) while the block runs."""

    def __init__(self, device: Any) -> None:
        self.cuda = str(device).startswith("cuda")
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)


def run_reference(ref: ReferenceEngine, requests: list[GenerationRequest]) -> tuple[float, list[StageTokens]]:
    started = time.perf_counter()
    out = [reference_tokens(ref, r) for r in requests]  # one at a time, as the reference serves them
    return time.perf_counter() - started, out


def run_engine(engine: BatchedEngine, requests: list[GenerationRequest]) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    jobs = [engine.submit(r) for r in requests]  # all arrive together
    for job in jobs:
        job.wait()
    return time.perf_counter() - started, jobs


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def split(seconds: dict[str, float]) -> str:
    return " ".join(f"{k[:3]}={seconds.get(k, 0.0):.1f}" for k in ("semantic", "coarse", "fine", "codec"))


def bench_batch1(ref: ReferenceEngine | None, engine: BatchedEngine, clip: float, voice: VoicePrompt | None) -> dict:
    request = make_request(clip, voice, seed=1)
    row: dict[str, Any] = {"clip_sec": clip, "voice": voice.name if voice else None}
    if ref is not None:
        with PeakMemory(engine.loaded.device) as mem:
            ref_sec, (expected,) = run_reference(ref, [request])
        row.update(reference_sec=ref_sec, reference_split=expected.seconds, reference_peak_mb=mem.peak_mb)
    with PeakMemory(engine.loaded.device) as mem:
        eng_sec, (job,) = run_engine(engine, [request])
    got = task_tokens(job)
    row.update(engine_sec=eng_sec, engine_split=dict(job.stage_seconds), engine_peak_mb=mem.peak_mb)
    row.update(audio_sec=audio_sec(got), engine_rtf=eng_sec / max(audio_sec(got), 1e-9))
    if ref is not None:
        row.update(ratio=ref_sec / eng_sec, reference_rtf=ref_sec / audio_sec(expected))
        row["tokens_equal"] = got.same_tokens(expected)
    progress(json.dumps(row, default=float))
    return row


def bench_concurrent(ref: ReferenceEngine | None, engine: BatchedEngine, lengths: list[float], voices: list) -> dict:
    requests = [make_request(sec, v, seed=10 + i) for i, (sec, v) in enumerate(zip(lengths, voices, strict=True))]
    row: dict[str, Any] = {"requests": len(requests), "lengths_sec": list(lengths)}
    with PeakMemory(engine.loaded.device) as mem:
        eng_sec, jobs = run_engine(engine, requests)
    progress(f"engine: {len(requests)} concurrent requests in {eng_sec:.1f} s")
    got = [task_tokens(j) for j in jobs]
    total_audio = sum(audio_sec(t) for t in got)
    row.update(audio_sec=total_audio, engine_sec=eng_sec, engine_audio_per_sec=total_audio / eng_sec)
    row["engine_peak_mb"] = mem.peak_mb
    if ref is not None:
        with PeakMemory(engine.loaded.device) as mem:
            ref_sec, expected = run_reference(ref, requests)
        row.update(reference_sec=ref_sec, reference_audio_per_sec=total_audio / ref_sec, reference_peak_mb=mem.peak_mb)
        row["ratio"] = ref_sec / eng_sec
        row["tokens_equal"] = all(g.same_tokens(e) for g, e in zip(got, expected, strict=True))
    progress(json.dumps(row, default=float))
    return row


class StepClock:
    """Times the engine thread's decode steps (semantic and coarse) and the gaps between them."""

    def __init__(self, engine: BatchedEngine) -> None:
        self.pipeline = engine.pipeline
        self.steps: list[tuple[float, float, int]] = []  # (start, end, rows waiting after the step)
        for stage in (self.pipeline.semantic, self.pipeline.coarse):
            stage.step = self._timed(stage.step)

    def _timed(self, step: Any) -> Any:
        def run() -> Any:
            if not self.pipeline.running:
                return step()
            started = time.perf_counter()
            out = step()
            self.steps.append((started, time.perf_counter(), self.pipeline.running + len(self.pipeline.to_coarse)))
            return out

        return run

    def gaps_ms(self) -> list[float]:
        """Time from the end of a step after which rows still waited to the start of the next step."""
        pairs = itertools.pairwise(self.steps)
        return [(nxt[0] - cur[1]) * 1e3 for cur, nxt in pairs if cur[2] > 0]


def bench_overlap(
    loaded: LoadedModel, lengths: list[float], voices: list, late_sec: float, serial_first: bool = False
) -> dict:
    """The same staggered requests with `overlap_fine` on and off; a late request arrives when the first
    fine batch starts."""
    requests = [make_request(sec, v, seed=10 + i) for i, (sec, v) in enumerate(zip(lengths, voices, strict=True))]
    late_request = make_request(late_sec, voices[0], seed=99)
    rows: dict[str, Any] = {}
    tokens: dict[str, list[StageTokens]] = {}
    for overlap in (False, True) if serial_first else (True, False):
        config = EngineConfig(max_batch_size=len(requests) + 1, max_wait_ms=20, overlap_fine=overlap)
        with BatchedEngine(loaded, config) as engine:
            engine.submit(make_request(0.3, voices[0], seed=0)).wait()  # warm-up
            clock = StepClock(engine)
            late: dict[str, Any] = {}
            real = engine.pipeline._fine_and_codec

            def fine(tasks: list[Any], real: Any = real, engine: BatchedEngine = engine, late: dict = late) -> None:
                if not late:
                    late["submitted"], late["job"] = time.perf_counter(), engine.submit(late_request)
                    late["waiter"] = threading.Thread(
                        target=lambda: (late["job"].wait(), late.update(done=time.perf_counter()))
                    )
                    late["waiter"].start()
                real(tasks)

            engine.pipeline._fine_and_codec = fine  # type: ignore[method-assign]
            started = time.perf_counter()
            with engine.scheduler._cond:  # all arrive together
                jobs = [engine.submit(r) for r in requests]
            for job in jobs:
                job.wait()
            late["waiter"].join()
            wall = time.perf_counter() - started
            late_latency = late["done"] - late["submitted"]  # submitted to audio ready
            late_done = late["job"].result
        got = [task_tokens(j) for j in [*jobs, late["job"]]]
        gaps = clock.gaps_ms()
        steps = [(e - s) * 1e3 for s, e, _ in clock.steps]
        total_audio = sum(audio_sec(t) for t in got)
        name = "overlap" if overlap else "serial"
        tokens[name] = got
        rows[name] = {
            "wall_sec": wall, "audio_sec": total_audio, "audio_per_sec": total_audio / wall,
            "decode_steps": len(steps), "step_ms_p50": float(np.median(steps)), "step_ms_max": max(steps),
            "gap_ms_max": max(gaps, default=0.0), "gap_ms_p99": float(np.percentile(gaps, 99)) if gaps else 0.0,
            "late_request_sec": late_latency, "late_audio_sec": len(late_done.audio) / late_done.sample_rate,
            "fine_codec_sec_per_task": float(np.mean([j.stage_seconds["fine_codec"] for j in jobs])),
        }  # fmt: skip
        progress(f"{name}: {json.dumps(rows[name], default=float)}")
    rows["tokens_equal"] = all(a.same_tokens(b) for a, b in zip(tokens["overlap"], tokens["serial"], strict=True))
    return rows


def print_overlap(result: dict) -> None:
    print(f"\nfine + codec off the decode loop: {result['model']} on {result['device']} ({result['dtype']}), "
          f"{result['threads']} threads, {len(result['lengths_sec'])} requests {result['lengths_sec']} s "
          f"+ 1 late ({result['late_sec']} s)")  # fmt: skip
    print(f"{'mode':<10}{'wall s':>8}{'audio-s/s':>11}{'step p50 ms':>13}{'max gap ms':>12}{'p99 gap ms':>12}"
          f"{'late req s':>12}")  # fmt: skip
    for name in ("overlap", "serial"):
        r = result[name]
        print(f"{name:<10}{r['wall_sec']:>8.1f}{r['audio_per_sec']:>11.3f}{r['step_ms_p50']:>13.1f}"
              f"{r['gap_ms_max']:>12.1f}{r['gap_ms_p99']:>12.1f}{r['late_request_sec']:>12.1f}")  # fmt: skip
    print(f"tokens equal between the two: {result['tokens_equal']}")


def main_overlap(args: argparse.Namespace, loaded: LoadedModel) -> int:
    import torch

    n = args.concurrent or 4
    lengths = [round(float(x), 2) for x in np.linspace(0.4, 1.2 if args.quick else 3.0, n)]
    late_sec = lengths[0]
    voices = load_voices(args.voices, n)
    with torch.inference_mode():
        rows = bench_overlap(loaded, lengths, voices, late_sec, args.serial_first)
    result = {
        "model": loaded.name, "device": str(loaded.device), "dtype": str(loaded.dtype).split(".")[-1],
        "threads": torch.get_num_threads(), "cpu": platform.processor(), "lengths_sec": lengths,
        "late_sec": late_sec, "serial_first": args.serial_first, **rows,
    }  # fmt: skip
    print_overlap(result)
    print(json.dumps(result, default=float))
    return 0 if rows["tokens_equal"] else 1


def print_table(result: dict) -> None:
    print(f"\nbarkserve engine benchmark: {result['model']} on {result['device']} ({result['dtype']}), "
          f"profile {result['profile']}, engine {result['engine']}")  # fmt: skip
    print(f"{'case':<34}{'reference s':>12}{'engine s':>10}{'ratio':>7}{'RTF ref/eng':>14}  tokens equal")
    for row in result["batch1"]:
        ref = row.get("reference_sec", float("nan"))
        rtf = f"{row.get('reference_rtf', float('nan')):.1f}/{row['engine_rtf']:.1f}"
        label = f"batch 1, {row['clip_sec']} s, {row['voice'] or 'no voice'}"
        print(f"{label:<34}{ref:>12.1f}{row['engine_sec']:>10.1f}"
              f"{row.get('ratio', float('nan')):>7.2f}{rtf:>14}  {row.get('tokens_equal', '-')}")  # fmt: skip
        if "reference_split" in row:
            print(f"{'  split reference':<34}{split(row['reference_split'])}")
        print(f"{'  split engine':<34}{split(row['engine_split'])}")
    c = result["concurrent"]
    label = f"{c['requests']} concurrent, {c['audio_sec']:.1f} s"
    print(f"{label:<34}{c.get('reference_sec', float('nan')):>12.1f}{c['engine_sec']:>10.1f}"
          f"{c.get('ratio', float('nan')):>7.2f}{'':>14}  {c.get('tokens_equal', '-')}")  # fmt: skip
    print(f"  audio-s per wall-s: reference {c.get('reference_audio_per_sec', float('nan')):.3f}, "
          f"engine {c['engine_audio_per_sec']:.3f}")  # fmt: skip
    print(f"  peak memory MB ({result['memory_kind']}): reference {c.get('reference_peak_mb', float('nan')):.0f}, "
          f"engine {c['engine_peak_mb']:.0f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a token-equality check failed (fp32/fp16, not int8), else 0."""
    import torch

    args = parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    loaded = build_loaded(args)
    if args.overlap:
        return main_overlap(args, loaded)
    cuda = loaded.device.type == "cuda"
    lengths = list(profile["concurrent"])
    n = args.concurrent or (16 if cuda else len(lengths))
    lengths = [lengths[i % len(lengths)] for i in range(n)]
    voices = load_voices(args.voices, n)
    config = EngineConfig(
        max_batch_size=n, max_wait_ms=20, compile=args.compile, quantize=args.quantize, kernels=args.kernels
    )
    ref = None if args.no_reference else ReferenceEngine(loaded)
    with BatchedEngine(loaded, config) as engine, torch.inference_mode():
        warm = make_request(0.3, voices[0], seed=0)
        engine.submit(warm).wait()  # first calls pay one-off costs (allocations, lazy imports)
        if ref is not None:
            reference_tokens(ref, warm)
        progress(f"warmed up; {loaded.name} on {loaded.device}, {torch.get_num_threads()} threads")
        voice = None if args.no_voice else voices[0]
        batch1 = [bench_batch1(ref, engine, clip, voice) for clip in profile["clips"]]
        concurrent = bench_concurrent(ref, engine, lengths, voices)
    result = {
        "model": loaded.name, "device": str(loaded.device), "dtype": str(loaded.dtype).split(".")[-1],
        "profile": "quick" if args.quick else "full", "threads": torch.get_num_threads(),
        "engine": f"batched(max_batch={n}, kernels={args.kernels}, compile={args.compile}, quantize={args.quantize})",
        "memory_kind": "cuda max allocated" if cuda else "process peak RSS", "cpu": platform.processor(),
        "batch1": batch1, "concurrent": concurrent,
    }  # fmt: skip
    print_table(result)
    print(json.dumps(result, default=float))
    checks = [r.get("tokens_equal", True) for r in [*batch1, concurrent]]
    return 0 if args.quantize or all(checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
