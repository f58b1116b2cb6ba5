"""Benchmark: time to first audio (TTFA) of streamed synthesis, against the first chunk made alone.

Streams go through `Synthesizer.stream` and the batched engine, as `/v1/audio/speech` does. For
inputs of 1, 3 and 8 chunks it reports the TTFA and the total time; the latency of the first chunk
synthesized alone (the 1-chunk input); the ratio TTFA / first-chunk-alone latency (target <= 1.3);
and the TTFA of each of 4 concurrent streams (target <= 2x the single-stream TTFA). Each case is
repeated (`--repeats`), the order of the cases alternating between repeats; the table shows the
median with min-max. Random weights with the real bark-small shapes (end-of-speech pinned off, so
each chunk makes exactly `--chunk-sec` of audio) and the tiny checkpoint's tokenizer and presets, or
`--model PATH` for a real checkpoint folder. Prints a table and one JSON line; `--out` saves it.

Run: `python benchmarks/bench_ttfa.py [--quick] [--model PATH] [--out FILE]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from barkserve.config import EngineConfig, ServerConfig
from barkserve.engine.batched import BatchedEngine
from barkserve.models import LoadedModel, ModelRegistry, load_model, pick_device
from barkserve.synthesizer import Synthesizer
from barkserve.testing.provenance import git_commit
from barkserve.testing.tiny import build_random_bark, make_tiny_checkpoint

FIRST = "Hello there."
# Each of these is long enough to be a chunk of its own after the first one.
SENTENCE = (
    "This is sentence number {i}, long enough that it fills most of a chunk by itself, so the text "
    "splits into as many chunks as it has sentences."
)
CASES = (1, 3, 8)
CONCURRENT = 4


def text_of(chunks: int) -> str:
    return " ".join([FIRST, *(SENTENCE.format(i=i) for i in range(1, chunks))])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_ttfa.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint folder; default: random bark-small weights")
    p.add_argument("--quick", action="store_true", help="short clips and one repeat (a smoke run)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chunk-sec", type=float, help="audio per chunk, seconds (default 1.0; quick 0.3)")
    p.add_argument("--repeats", type=int, help="repeats of every case (default 3; quick 1)")
    p.add_argument("--voices", type=Path, help="folder of Bark .npz prompts (default: ../shared fixtures)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return p.parse_args(argv)


def fixtures_dir(given: Path | None) -> Path | None:
    here = Path(__file__).resolve()
    for root in [given] if given else [p / "shared/fixtures/bark-voices" for p in here.parents[:5]]:
        if root is not None and (root / "v2").is_dir():
            return root
    return None


class _Registry(ModelRegistry):
    """The registry of one already loaded model."""

    def __init__(self, config: ServerConfig, loaded: LoadedModel) -> None:
        super().__init__(config, loader=lambda name, cfg: loaded)


def build_synthesizer(args: argparse.Namespace, workdir: Path) -> tuple[Synthesizer, str]:
    """A synthesizer over the batched engine: random bark-small weights with a tiny checkpoint's
    tokenizer and presets, or the `--model` checkpoint."""
    import torch

    device = pick_device(args.device)
    if args.model:
        config = ServerConfig(model=args.model, device=device, offline=True, voices_dir=workdir / "voices")
        name = args.model
    else:
        tiny = make_tiny_checkpoint(workdir / "tokenizer", presets_from=fixtures_dir(args.voices))
        config = ServerConfig(model=str(tiny), device=device, offline=True, voices_dir=workdir / "voices")
        tokenizer = load_model(str(tiny), config).tokenizer
        model = build_random_bark("bark-small")
        eos = int(model.generation_config.semantic_config["eos_token_id"])
        with torch.no_grad():
            model.semantic.lm_head.weight[eos].zero_()  # never the argmax: every chunk is full length
        model.to(device=device).eval()
        rate = int(model.generation_config.sample_rate)
        loaded = LoadedModel(str(tiny), model, tokenizer, torch.device(device), torch.float32, rate)
        name = "random bark-small"
    registry = _Registry(config, loaded) if not args.model else ModelRegistry(config)
    engine_config = EngineConfig(max_batch_size=8, max_wait_ms=10)
    return Synthesizer(config, registry, engine_factory=lambda m: BatchedEngine(m, engine_config)), name


def one_stream(synth: Synthesizer, chunks: int, options: dict[str, Any]) -> dict[str, float]:
    """TTFA and total seconds of one streamed text of `chunks` chunks."""
    started = time.perf_counter()
    info, pieces = synth.stream(text_of(chunks), voice="v2/en_speaker_1", options=options, lookahead=2)
    if len(info.chunks) != chunks:
        raise RuntimeError(f"the {chunks}-chunk text split into {len(info.chunks)} chunks")
    first_at = None
    for _ in pieces:
        first_at = first_at or time.perf_counter()
    return {"ttfa": (first_at or time.perf_counter()) - started, "total": time.perf_counter() - started}


def concurrent_streams(synth: Synthesizer, options: dict[str, Any]) -> list[float]:
    """TTFA of each of CONCURRENT 3-chunk streams started together."""
    results: list[dict[str, float]] = [{} for _ in range(CONCURRENT)]
    barrier = threading.Barrier(CONCURRENT)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = one_stream(synth, 3, {**options, "seed": options["seed"] + 100 * i})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CONCURRENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r["ttfa"] for r in results]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(synth: Synthesizer, repeats: int, chunk_sec: float) -> dict[str, Any]:
    """Every case `repeats` times, the order of the cases reversed on every other repeat."""
    options = {"seed": 1, "text_temp": 0, "waveform_temp": 0, "max_duration_sec": chunk_sec}
    runs: dict[str, list[dict[str, float]]] = {str(n): [] for n in CASES}
    concurrent: list[list[float]] = []
    one_stream(synth, 1, options)  # warm-up: first calls pay one-off costs
    for r in range(repeats):
        order = list(CASES) if r % 2 == 0 else list(reversed(CASES))
        for n in order:
            runs[str(n)].append(one_stream(synth, n, options))
            progress(f"repeat {r + 1}: {n} chunk(s) ttfa {runs[str(n)][-1]['ttfa']:.2f} s")
        concurrent.append(concurrent_streams(synth, options))
        progress(f"repeat {r + 1}: {CONCURRENT} concurrent ttfa {[round(t, 2) for t in concurrent[-1]]}")
    alone = statistics.median(run["ttfa"] for run in runs["1"])
    single3 = statistics.median(run["ttfa"] for run in runs["3"])
    cases = {
        n: {"ttfa": spread([x["ttfa"] for x in rs]), "total": spread([x["total"] for x in rs]),
            "ttfa_over_first_alone": statistics.median(x["ttfa"] for x in rs) / alone}
        for n, rs in runs.items()
    }  # fmt: skip
    worst = [max(ttfas) for ttfas in concurrent]
    return {
        "first_chunk_alone_sec": alone,
        "cases": cases,
        "concurrent": {
            "streams": CONCURRENT,
            "ttfa_each": concurrent,
            "worst_ttfa": spread(worst),
            "worst_over_single": statistics.median(worst) / single3,
        },
    }


def progress(message: str) -> None:
    print(f"[ttfa] {message}", file=sys.stderr, flush=True)


def print_table(result: dict[str, Any]) -> None:
    print(f"\nbarkserve time to first audio: {result['model']} on {result['device']}, {result['chunk_sec']} s per "
          f"chunk, {result['repeats']} repeat(s), commit {result['commit']}, torch {result['torch']}")  # fmt: skip
    print(f"first chunk alone: {result['first_chunk_alone_sec']:.2f} s")
    print(f"{'input':<10}{'TTFA s (median, min-max)':>28}{'total s':>10}{'TTFA / first alone':>20}")
    for n, row in result["cases"].items():
        t = row["ttfa"]
        span = f"{t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f})"
        print(f"{n + ' chunks':<10}{span:>28}{row['total']['median']:>10.2f}{row['ttfa_over_first_alone']:>20.2f}")
    c = result["concurrent"]
    print(f"{c['streams']} concurrent 3-chunk streams: worst TTFA {c['worst_ttfa']['median']:.2f} s, "
          f"{c['worst_over_single']:.2f}x the single stream's")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (the targets are reported, not enforced)."""
    import torch

    args = parse_args(argv)
    chunk_sec = args.chunk_sec or (0.3 if args.quick else 1.0)
    repeats = args.repeats or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        synth, name = build_synthesizer(args, Path(tmp))
        with synth, torch.inference_mode():
            measured = measure(synth, repeats, chunk_sec)
            device = str(synth.engine(synth.config.default_model).loaded.device)  # type: ignore[attr-defined]
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    result = {
        "model": name, "device": device, "gpu": gpu, "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "commit": git_commit(),
        "chunk_sec": chunk_sec, "repeats": repeats, **measured,
    }  # fmt: skip
    print_table(result)
    emit(result, args.out)
    return 0


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print the result as one JSON line, and write it to `out` when given."""
    line = json.dumps(result, default=float)
    print(line)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
