"""Benchmark: `barkserve batch` throughput (items per minute) on 1 and 2 Ray engine replicas, and locally.

The same items (English sentences, fixed seeds, `--item-sec` of audio each) go through
`run_batch` three ways: on this machine's batched engine without Ray, and on a Ray Data actor
pool of 1 and of 2 engine replicas on a local cluster of `--cpus` CPUs (each replica reserves
`--cpus` / replicas, so its torch uses that many threads). Two rates are reported per way: end to
end (actor start and model load included, what a user waits for) and over the generation span
(first item started to last item finished, across all replicas). Repeats alternate the order.

Weights: random bark-small (`--weights bark-small`, the default; end-of-speech pinned off so each
item makes exactly `--item-sec` of audio) or the tiny checkpoint (`--weights tiny`, a smoke run);
tokenizer and presets of the tiny checkpoint. On this project's machines the scaling figure comes
from 2 CPU cores shared with other work: it shows how replicas share cores, not how they spread
over GPUs or nodes.

Run: `python benchmarks/bench_ray.py [--quick] [--weights tiny|bark-small] [--out FILE]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from barkserve.config import EngineConfig, ServerConfig
from barkserve.scale import connect
from barkserve.scale.batch import local_results, ray_results, run_batch
from barkserve.scale.items import BatchItem
from barkserve.synthesizer import Synthesizer
from barkserve.testing.provenance import git_commit
from barkserve.testing.tiny import make_tiny_checkpoint

HERE = Path(__file__).resolve().parent
SENTENCE = "This is item number {i} of the batch, one sentence of ordinary English speech."


def _ttfa_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ttfa", HERE / "bench_ttfa.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_ray.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny weights, 4 short items, one repeat (a smoke run)")
    p.add_argument("--weights", choices=["bark-small", "tiny"], help="random weights' shape (default bark-small)")
    p.add_argument("--items", type=int, help="items per run (default 8; quick 4)")
    p.add_argument("--item-sec", type=float, help="audio per item, seconds (default 0.5; quick 0.2)")
    p.add_argument("--repeats", type=int, help="repeats of every way (default 2; quick 1)")
    p.add_argument("--cpus", type=float, default=2.0, help="CPUs of the local Ray cluster the replicas share")
    p.add_argument("--voices", type=Path, help="folder of Bark .npz prompts (default: ../shared fixtures)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return p.parse_args(argv)


def build_checkpoint(root: Path, weights: str, voices: Path | None) -> Path:
    """A random checkpoint on disk (each replica loads it); bark-small's end-of-speech pinned off."""
    import torch
    from transformers import BarkModel

    folder = make_tiny_checkpoint(root / weights, presets_from=voices, shape=weights)
    if weights == "bark-small":
        model = BarkModel.from_pretrained(folder)
        eos = int(model.generation_config.semantic_config["eos_token_id"])
        with torch.no_grad():
            model.semantic.lm_head.weight[eos].zero_()  # never the argmax: every item is full length
        model.save_pretrained(folder)
    return folder


def items_of(count: int, item_sec: float) -> list[BatchItem]:
    options = {"seed": 0, "text_temp": 0.7, "waveform_temp": 0.7, "max_duration_sec": item_sec}
    return [
        BatchItem(i + 1, f"item-{i}", SENTENCE.format(i=i), "v2/en_speaker_1", None, "wav", {**options, "seed": i})
        for i in range(count)
    ]


def one_run(items: list[BatchItem], out: Path, results: Any) -> dict[str, float]:
    """Items per minute of one run: end to end, and over the span in which items were generated."""
    started = time.time()
    records: list[dict[str, Any]] = []
    report = run_batch(items, out, results, on_record=records.append)
    ended = time.time()
    if report.failed or len(report.made) != len(items):
        raise RuntimeError(f"{len(report.failed)} item(s) failed: {report.failed[:1]}")
    span = max(r["finished_at"] for r in records) - min(r["started_at"] for r in records)
    return {"end_to_end": 60 * len(items) / (ended - started), "generation": 60 * len(items) / span}


def measure(config: ServerConfig, items: list[BatchItem], repeats: int, cpus: float, root: Path) -> dict[str, Any]:
    ttfa = _ttfa_module()
    ways = ["local", "ray-1", "ray-2"]
    runs: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for r in range(repeats):
        for way in ways if r % 2 == 0 else list(reversed(ways)):
            out = root / f"out-{way}-{r}"
            if way == "local":
                with Synthesizer(config) as synth:
                    runs[way].append(one_run(items, out, local_results(synth)))
            else:
                replicas = int(way[-1])
                results = ray_results(config, replicas, cpus_per_replica=cpus / replicas)
                runs[way].append(one_run(items, out, results))
            print(f"[ray] repeat {r + 1}: {way} {runs[way][-1]['end_to_end']:.2f} items/min", file=sys.stderr)
    table = {
        way: {kind: ttfa.spread([run[kind] for run in rs]) for kind in ("end_to_end", "generation")}
        for way, rs in runs.items()
    }
    one, two = table["ray-1"]["generation"]["median"], table["ray-2"]["generation"]["median"]
    return {"items_per_min": table, "two_over_one_replica": two / one}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    import torch

    args = parse_args(argv)
    ttfa = _ttfa_module()
    weights = args.weights or ("tiny" if args.quick else "bark-small")
    count, item_sec = args.items or (4 if args.quick else 8), args.item_sec or (0.2 if args.quick else 0.5)
    repeats = args.repeats or (1 if args.quick else 2)
    connect("local", num_cpus=int(args.cpus))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = build_checkpoint(root, weights, ttfa.fixtures_dir(args.voices))
        config = ServerConfig(
            model=str(folder), device="cpu", offline=True, voices_dir=root / "voices", asr_model="", speaker_model="",
            engine=EngineConfig(max_batch_size=8, max_wait_ms=10),
        )  # fmt: skip
        measured = measure(config, items_of(count, item_sec), repeats, args.cpus, root)
    result = {
        "model": f"random {weights}", "device": "cpu", "cpu": platform.processor() or platform.machine(),
        "cluster_cpus": args.cpus, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "commit": git_commit(), "items": count, "item_sec": item_sec, "repeats": repeats,
        "note": f"scaling measured on {args.cpus:g} CPU cores shared by the replicas, not on GPUs or nodes",
        **measured,
    }  # fmt: skip
    print_table(result)
    ttfa.emit(result, args.out)
    return 0


def print_table(result: dict[str, Any]) -> None:
    print(f"\nbarkserve batch throughput: {result['model']}, {result['items']} items of {result['item_sec']} s, "
          f"{result['repeats']} repeat(s), {result['cluster_cpus']:g} CPUs, commit {result['commit']}, "
          f"torch {result['torch']}")  # fmt: skip
    print(f"{'way':<8}{'items/min end to end':>26}{'items/min generating':>26}")
    for way, row in result["items_per_min"].items():
        cells = [
            f"{row[k]['median']:.2f} ({row[k]['min']:.2f}-{row[k]['max']:.2f})" for k in ("end_to_end", "generation")
        ]
        print(f"{way:<8}{cells[0]:>26}{cells[1]:>26}")
    print(f"2 replicas / 1 replica (generating): {result['two_over_one_replica']:.2f}x; {result['note']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
