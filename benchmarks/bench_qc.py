"""Benchmark: what quality control (`qc`) adds to a synthesis, scoring every chunk as it is made.

The same text is synthesized with and without `qc` on the same engine. The check is set so that
every chunk passes at its first try (`tries` 1, thresholds that cannot fail), so both runs generate
exactly the same audio and the difference is the scoring alone: Whisper hearing each chunk and the
speaker model embedding it. Repeats alternate the order (plain first, then qc first) and the table
shows the median with min-max.

Models: random bark-small weights (end-of-speech pinned off, so every chunk makes `--chunk-sec` of
audio) with the tiny checkpoint's tokenizer and presets, as benchmarks/bench_ttfa.py; scorers with
random weights in `--asr-shape`: `large-v3-turbo` (the default ASR's layer sizes: width 1280, 32
encoder and 4 decoder layers) or `tiny`; the speaker model has wavlm-base-plus-sv's sizes (width
768, 12 layers) unless `--quick`. Compute depends on shapes, not on weight values; the vocabulary is
the tiny tokenizer's (~1,900 ids, not 51,866), which only shrinks the output layer of a few
decoded tokens. `--model PATH` uses a real Bark checkpoint folder instead.

Run: `python benchmarks/bench_qc.py [--quick] [--out FILE]`.

`--scoring` measures the scorers alone instead: per-chunk time of the MOS predictors (`mos_model`,
real shipped weights) and Resemblyzer, scoring 8 chunks one at a time (batch 1) and in one call
(batch 8); `--chunk-sec` is the length of each chunk (default 5 s). Each row has wall-clock seconds
and the process's CPU seconds per chunk: on a shared machine the wall clock follows the load of
others, the CPU time is the work done. `--utmos` adds UTMOS at UTMOS22's sizes with random weights
(saved to a temporary file and loaded as `utmos:PATH`; speed only, its scores mean nothing); the
8 chunks have one length, so its batch is one forward pass (chunks of different lengths are not
batched: see quality/utmos.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from barkserve.testing.provenance import git_commit

HERE = Path(__file__).resolve().parent


def _ttfa_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ttfa", HERE / "bench_ttfa.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_qc.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="Bark checkpoint folder; default: random bark-small weights")
    p.add_argument("--quick", action="store_true", help="tiny scorers, short clips, one repeat (a smoke run)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--asr-shape", choices=["large-v3-turbo", "tiny"], help="ASR sizes (default large-v3-turbo)")
    p.add_argument("--chunks", type=int, default=3, help="sentences in the text (default 3)")
    p.add_argument("--chunk-sec", type=float, help="audio per chunk, seconds (default 1.0; quick 0.3)")
    p.add_argument("--repeats", type=int, help="repeats (default 2; quick 1)")
    p.add_argument("--voices", type=Path, help="folder of Bark .npz prompts (default: ../shared fixtures)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    p.add_argument("--scoring", action="store_true", help="scorers alone: batch 1 vs batch 8 per chunk")
    p.add_argument("--utmos", action="store_true", help="with --scoring: also UTMOS (random weights, real sizes)")
    p.add_argument("--threads", type=int, help="with --scoring: torch's (and so onnxruntime's) threads [torch's]")
    return p.parse_args(argv)


def scoring(args: argparse.Namespace) -> dict[str, Any]:
    """Per-chunk seconds of each real scorer at batch 1 and batch 8 (median of repeats)."""
    import numpy as np
    import torch

    from barkserve.models import pick_device
    from barkserve.quality.mos import load_mos
    from barkserve.quality.resemblyzer import ResemblyzerEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    chunk_sec = args.chunk_sec or (1.5 if args.quick else 5.0)
    repeats = args.repeats or (1 if args.quick else 3)
    rng = np.random.default_rng(0)
    # Compute depends on length only: 8 chunks of speech-like noise at Bark's rate.
    chunks = [(0.1 * rng.standard_normal(int(chunk_sec * 24_000))).astype(np.float32) for _ in range(8)]
    load_before = [round(x, 2) for x in os.getloadavg()]
    scorers: dict[str, Any] = {"dnsmos": load_mos("dnsmos", device), "distillmos": load_mos("distillmos", device)}
    with tempfile.TemporaryDirectory() as tmp:
        if args.utmos:
            scorers["utmos-random-weights"] = load_mos(f"utmos:{random_utmos(Path(tmp))}", device)
        encoder = ResemblyzerEncoder(device)
        runs = {**{k: (lambda cs, p=p: p.predict(cs, 24_000)) for k, p in scorers.items()},
                "resemblyzer": lambda cs: encoder.embed(cs, 24_000)}  # fmt: skip
        rows = {}
        for name, run in runs.items():
            run(chunks[:1])  # warm-up at both sizes (onnxruntime and oneDNN set up per input shape)
            run(chunks)
            one: list[tuple[float, float]] = []
            eight: list[tuple[float, float]] = []
            for _ in range(repeats):
                with timed(one, len(chunks)):
                    for c in chunks:
                        run([c])
                with timed(eight, len(chunks)):
                    run(chunks)
            rows[name] = row(one, eight)
            print(f"{name:20s} {describe(rows[name])}", flush=True)
    queue = queue_rows(device, chunks, repeats)
    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "chunk_sec": chunk_sec, "repeats": repeats, "scorers": rows, "queue": queue}  # fmt: skip


@contextmanager
def timed(into: list[tuple[float, float]], chunks: int) -> Iterator[None]:
    """Append (wall seconds, process CPU seconds) per chunk of the block to `into`."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(((time.perf_counter() - wall) / chunks, (time.process_time() - cpu) / chunks))


def row(one: list[tuple[float, float]], eight: list[tuple[float, float]]) -> dict[str, float]:
    """Medians of batch 1 and batch 8, wall and CPU, and the throughput ratios."""
    b1, b8 = statistics.median(w for w, _ in one), statistics.median(w for w, _ in eight)
    c1, c8 = statistics.median(c for _, c in one), statistics.median(c for _, c in eight)
    return {"batch1_sec_per_chunk": b1, "batch8_sec_per_chunk": b8, "speedup": b1 / b8,
            "batch1_cpu_sec_per_chunk": c1, "batch8_cpu_sec_per_chunk": c8, "cpu_speedup": c1 / c8}  # fmt: skip


def describe(r: dict[str, float]) -> str:
    return (f"batch 1 {r['batch1_sec_per_chunk']:.3f} s/chunk, batch 8 {r['batch8_sec_per_chunk']:.3f}: "
            f"x{r['speedup']:.2f} (CPU {r['batch1_cpu_sec_per_chunk']:.3f} -> {r['batch8_cpu_sec_per_chunk']:.3f}, "
            f"x{r['cpu_speedup']:.2f})")  # fmt: skip


def random_utmos(folder: Path) -> Path:
    """A UTMOS state dict at UTMOS22's sizes with random weights (compute depends on sizes, not values)."""
    import torch

    from barkserve.quality.utmos import UtmosShape, build

    torch.manual_seed(0)
    path = folder / "utmos-random.pt"
    torch.save(build(UtmosShape()).state_dict(), path)
    return path


def queue_rows(device: str, chunks: list[Any], repeats: int) -> dict[str, Any]:
    """QC's path: `ScoringQueue` over a Scorer (Resemblyzer + each MOS predictor + the signal measures),
    eight chunks judged one after another against eight waiting together (as concurrent requests do)."""
    from barkserve.quality.scorer import Scorer

    rows = {}
    for mos in ("dnsmos", "distillmos"):
        queue = Scorer(asr=None, speaker="resemblyzer", mos=mos, device=device).queue
        queue.score(chunks[0], 24_000, "x", "en")  # warm-up, models loaded, at both sizes
        with queue.held():
            warm = [queue.submit(c, 24_000, "x", "en") for c in chunks]
        for f in warm:
            f.result()
        one: list[tuple[float, float]] = []
        eight: list[tuple[float, float]] = []
        for _ in range(repeats):
            with timed(one, len(chunks)):
                for c in chunks:
                    queue.score(c, 24_000, "x", "en")
            with timed(eight, len(chunks)):
                with queue.held():
                    futures = [queue.submit(c, 24_000, "x", "en") for c in chunks]
                for f in futures:
                    f.result()
        name = f"resemblyzer+{mos}+signal"
        rows[name] = row(one, eight)
        print(f"queue {name:28s} {describe(rows[name])}", flush=True)
    return rows


def build_scorers(root: Path, asr_shape: str, speaker_full: bool) -> tuple[Path, Path]:
    """Random-weight ASR and speaker checkpoints of the requested sizes, saved like real ones."""
    from barkserve.testing.tiny import make_tiny_speaker, make_tiny_whisper

    if asr_shape == "large-v3-turbo":
        asr = make_tiny_whisper(root / "asr", d_model=1280, layers=4, encoder_layers=32, heads=20, ffn=5120)
    else:
        asr = make_tiny_whisper(root / "asr")
    speaker = make_tiny_speaker(root / "speaker", **({"hidden_size": 768, "layers": 12} if speaker_full else {}))
    return asr, speaker


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (the overhead is reported, not judged)."""
    import torch

    from barkserve.quality.judge import ScorerJudge
    from barkserve.quality.scorer import Scorer, ScorerConfig

    args = parse_args(argv)
    ttfa = _ttfa_module()
    if args.scoring:
        ttfa.emit({**scoring(args), "commit": git_commit()}, args.out)
        return 0
    chunk_sec = args.chunk_sec or (0.3 if args.quick else 1.0)
    repeats = args.repeats or (1 if args.quick else 2)
    asr_shape = args.asr_shape or ("tiny" if args.quick else "large-v3-turbo")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth, name = ttfa.build_synthesizer(args, work)
        asr, speaker = build_scorers(work / "scorers", asr_shape, speaker_full=not args.quick)
        scorer = Scorer(ScorerConfig(asr=str(asr), speaker=str(speaker), device=args.device, offline=True))
        synth.judge = ScorerJudge(scorer)
        text = ttfa.text_of(args.chunks)
        base = {"seed": 3, "text_temp": 0, "waveform_temp": 0, "max_duration_sec": chunk_sec}
        check = {"max_error": 10.0, "min_similarity": -1.0, "tries": 1}  # always passes: no regeneration
        with synth, torch.inference_mode():
            scorer.preload()
            synth.synthesize(ttfa.FIRST, voice="v2/en_speaker_1", options=base)  # warm-up
            times: dict[str, list[float]] = {"plain": [], "qc": []}
            audio_sec, chunks = 0.0, 0
            for r in range(repeats):
                for kind in ("plain", "qc") if r % 2 == 0 else ("qc", "plain"):
                    options = {**base, "qc": check} if kind == "qc" else base
                    started = time.perf_counter()
                    result = synth.synthesize(text, voice="v2/en_speaker_1", options=options)
                    times[kind].append(time.perf_counter() - started)
                    audio_sec, chunks = result.duration_sec, result.chunk_count
                    print(f"[qc] repeat {r + 1} {kind}: {times[kind][-1]:.2f} s", file=sys.stderr, flush=True)
            device = str(synth.engine(synth.config.default_model).loaded.device)  # type: ignore[attr-defined]
    plain, checked = statistics.median(times["plain"]), statistics.median(times["qc"])
    result_row = {
        "model": name, "device": device, "torch": torch.__version__, "commit": git_commit(),
        "threads": torch.get_num_threads(), "asr_shape": asr_shape, "chunks": chunks, "chunk_sec": chunk_sec,
        "audio_sec": audio_sec, "repeats": repeats,
        "plain_sec": ttfa.spread(times["plain"]), "qc_sec": ttfa.spread(times["qc"]),
        "overhead_sec_per_chunk": (checked - plain) / chunks, "overhead_ratio": checked / plain,
    }  # fmt: skip
    print(f"\nbarkserve qc overhead: {name} on {device}, ASR {asr_shape}, {chunks} chunks of {chunk_sec} s, "
          f"{repeats} repeat(s), commit {result_row['commit']}")  # fmt: skip
    print(f"without qc {plain:.2f} s, with qc {checked:.2f} s: x{checked / plain:.2f}, "
          f"{(checked - plain) / chunks:.2f} s per chunk")  # fmt: skip
    ttfa.emit(result_row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
