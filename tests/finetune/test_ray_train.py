"""`finetune train --ray`: Ray Train workers (gloo, a local 2-CPU cluster) take the steps one process takes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from finetune_helpers import QUICK

from barkserve.errors import ConfigError
from barkserve.finetune import TrainOptions, train
from barkserve.finetune.ray_train import train_ray
from barkserve.finetune.run import load_checkpoint

# Two micro-batches per step, one per worker: the summed gradient is the one process's sum.
OPTIONS = {**QUICK, "stages": ("semantic", "coarse"), "grad_accum": 2, "max_steps": 4, "eval_every": 2, "save_every": 2}


def test_a_run_resumed_on_ray_equals_the_single_process_run(prepared: Path, tmp_path: Path) -> None:
    import ray

    single = train(prepared, tmp_path / "single", TrainOptions(**OPTIONS), offline=True)
    assert single.step == 4

    def stop_at_2(step: int, log: dict[str, Any]) -> None:
        if step == 2:
            raise KeyboardInterrupt

    # Started in one process, stopped after its first checkpoint, finished by two Ray workers.
    mixed = tmp_path / "mixed"
    assert train(prepared, mixed, TrainOptions(**OPTIONS), offline=True, on_step=stop_at_2).step == 2
    with pytest.raises(ConfigError, match="at least the number of workers"):
        train_ray(prepared, mixed, TrainOptions(**OPTIONS), workers=3, offline=True)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        result = train_ray(prepared, mixed, TrainOptions(**OPTIONS), workers=2, offline=True)
        # A worker's error comes back as the library error it was.
        with pytest.raises(ConfigError, match="another options"):
            train_ray(prepared, mixed, TrainOptions(**{**OPTIONS, "learning_rate": 1e-2}), workers=2, offline=True)
    finally:
        ray.shutdown()
    assert (result.step, result.stopped, result.best_step) == (4, "max_steps", single.best_step)
    # Equal to float rounding: sums are added in another order (across workers, and a Ray worker runs
    # torch with one thread), so not bit for bit.
    assert result.best_heldout == pytest.approx(single.best_heldout, rel=1e-6)
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(run / name)["trainable"] for run in (single.run_dir, mixed))
        assert a.keys() == b.keys(), name
        assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a), name
        assert any(bool(b[k].abs().sum() > 0) for k in b if "lora_B" in k)  # trained: LoRA's B starts at zero
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (single.run_dir, mixed)]
    for one, ray_ in zip(metrics[0]["evals"], metrics[1]["evals"], strict=True):
        assert one["step"] == ray_["step"]
        # Training losses are summed over the workers: the one process's mean over all micro-batches.
        assert one["train"] == pytest.approx(ray_["train"], rel=1e-6)
        assert one["heldout"] == pytest.approx(ray_["heldout"], rel=1e-6)
    assert metrics[0]["best"]["step"] == metrics[1]["best"]["step"] and metrics[1]["stopped"] == "max_steps"
