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
    assert result.best_heldout == single.best_heldout
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(run / name)["trainable"] for run in (single.run_dir, mixed))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (single.run_dir, mixed)]
    assert metrics[0] == metrics[1]  # train losses summed over the workers, held-out losses, the best
