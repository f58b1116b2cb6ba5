"""Benchmark: fine-tuning steps per second and peak memory, per stage, LoRA and full, on random weights.

Random weights with the real bark-small shapes (compute depends on shapes and token counts, not on
weight values) and random targets of a 10 s clip: 256 text ids, 499 semantic tokens, 750 codec frames.
Each step is `finetune.train`'s own step (teacher-forced forward, backward) plus clipping and AdamW.
Prints a table and one JSON line. Run: `python benchmarks/bench_finetune.py [--quick] [--device cuda]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from typing import Any

import numpy as np

from barkserve.bark import CODEBOOK_SIZE, N_FINE, SEMANTIC_VOCAB
from barkserve.engine.inputs import BarkGeometry
from barkserve.finetune.prepare import Item
from barkserve.finetune.run import TrainOptions, build_model
from barkserve.finetune.train import _step
from barkserve.testing.tiny import build_random_bark

PROFILES = {
    "full": {"shape": "bark-small", "seconds": 10.0, "steps": 2},
    "quick": {"shape": "tiny", "seconds": 2.0, "steps": 1},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_finetune.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes, one timed step (a smoke run)")
    p.add_argument("--shape", choices=["tiny", "bark-small", "bark-large"], help="model shapes [profile's]")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, help="timed steps per stage and mode [profile's]")
    p.add_argument("--modes", default="lora,full", help="lora (rank 16), full, or both")
    return p.parse_args(argv)


def random_items(n: int, seconds: float, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    frames, semantic = round(seconds * 75), round(seconds * 49.9)
    return [
        Item(
            id=str(i),
            text_ids=rng.integers(1000, 119_000, 256),
            semantic=rng.integers(0, SEMANTIC_VOCAB, semantic),
            codes=rng.integers(0, CODEBOOK_SIZE, (N_FINE, frames)),
        )
        for i in range(n)
    ]


def build(shape: str) -> Any:
    if shape != "bark-large":
        return build_random_bark(shape)
    from barkserve.testing import tiny

    # suno/bark's GPTs: 24 layers, 1,024 wide, 16 heads.
    tiny.SHAPES["bark-large"] = {**tiny.SHAPES["bark-small"], "hidden_size": 1024, "num_layers": 24, "num_heads": 16}
    return build_random_bark("bark-large")


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_stage(model: Any, mode: str, stage: str, items: list[Item], args: argparse.Namespace, steps: int) -> dict:
    import torch

    options = TrainOptions(stages=(stage,), lora_rank=16 if mode == "lora" else None, batch_size=args.batch_size,
                           device=args.device)  # fmt: skip
    holder = build_model(model, options)
    params = [p for p in holder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    geo, device = BarkGeometry.from_model(model), torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(steps + 1):  # the first step pays one-off costs and is not timed
        started = time.perf_counter()
        _step(model, geo, items, options, step, device)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    if mode == "lora":
        holder.unload()  # the plain model again, for the next stage or mode
    trainable = sum(p.numel() for p in params)
    step_sec = float(np.median(times[1:]))
    return {"mode": mode, "stage": stage, "trainable": trainable, "step_sec": round(step_sec, 3),
            "steps_per_sec": round(1 / step_sec, 3), "peak_mb": round(peak_memory_mb(args.device))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    shape = args.shape or str(profile["shape"])
    steps = args.steps or int(profile["steps"])
    model = build(shape).to(args.device)
    items = random_items(max(args.batch_size, 1), float(profile["seconds"]))
    rows = []
    for mode in args.modes.split(","):
        for stage in ("semantic", "coarse", "fine"):
            rows.append(bench_stage(model, mode, stage, items, args, steps))
            print(f"{mode:5} {stage:9} {rows[-1]['step_sec']:8.3f} s/step  peak {rows[-1]['peak_mb']} MB",
                  file=sys.stderr)  # fmt: skip
    result = {"shape": shape, "device": args.device, "dtype": "bf16 autocast" if args.device == "cuda" else "fp32",
              "batch_size": args.batch_size, "clip_sec": profile["seconds"], "threads": torch.get_num_threads(),
              "memory_kind": "cuda max allocated" if args.device == "cuda" else "process peak RSS (cumulative)",
              "cpu": platform.processor(), "torch": torch.__version__, "rows": rows}  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
