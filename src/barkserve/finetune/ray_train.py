"""`finetune train --ray`: the same training loop, data-parallel on a Ray cluster (Ray Train, TorchTrainer).

Each Ray Train worker runs `train.train` with its `Ranks`: the micro-batches of every step (the same
ones, with the same windows and dropout seeds, as one process draws) are dealt out round-robin, their
gradients summed over the workers (gloo on CPUs, NCCL on GPUs) and every worker takes the same
optimizer step. So the run is the single-process run with `--grad-accum` micro-batches per step;
only the order in which gradients are added differs (weights agree to float rounding, not bit for
bit). Rank 0 scores the held-out set and writes the run folder, which must be on storage every
worker sees (one machine, or a shared filesystem), as must the dataset and the base model.
Checkpoints and resuming are the single-process ones: a run can be resumed with or without `--ray`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from barkserve.errors import BarkServeError, ConfigError
from barkserve.finetune import run as runs
from barkserve.finetune.prepare import load_dataset
from barkserve.finetune.train import Ranks, TrainResult, run_record


def train_ray(
    dataset_dir: str | Path,
    run_dir: str | Path,
    options: runs.TrainOptions,
    workers: int = 2,
    offline: bool = False,
) -> TrainResult:
    """Train with `workers` Ray Train workers on the cluster this process joined (`scale.cluster.connect`;
    a new local one if none); returns what `train` returns, read from the run folder.

    Raises:
        ConfigError: Fewer micro-batches per step than workers; a run folder of another run.
        DatasetError: The dataset is unfinished or unreadable.
        BarkServeError: What `train` raised in a worker (DatasetError, ConfigError, StorageFull, ...).
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if workers < 1 or options.grad_accum < workers:
        raise ConfigError(
            f"--grad-accum ({options.grad_accum}) must be at least the number of workers ({workers}): "
            "each worker computes whole micro-batches of every step"
        )
    dataset, out = Path(dataset_dir).resolve(), Path(run_dir).resolve()
    # Refused here, before any worker starts: another run's folder, an unfinished dataset.
    meta, _, _ = load_dataset(dataset)
    out.mkdir(parents=True, exist_ok=True)
    runs.check_run(out, run_record(meta, dataset, options))
    if not ray.is_initialized():
        ray.init()
    gpu = options.device.startswith("cuda") or (
        options.device == "auto" and ray.cluster_resources().get("GPU", 0) >= workers
    )
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"dataset": str(dataset), "run": str(out), "options": options, "offline": offline},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RunConfig(name="ray", storage_path=str(out)),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Ray wraps a worker's error in its own; ours are raised as they were
        cause = _ours(exc)
        if cause is None:
            raise
        raise cause from exc
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    best = metrics["best"]
    return TrainResult(out, metrics["step"], metrics["stopped"], metrics["base_heldout"], best["heldout"], best["step"])


def _ours(exc: BaseException) -> BarkServeError | None:
    """The first BarkServeError in the exception's causes, or in a Ray worker group's errors."""
    seen: list[BaseException] = [exc]
    while seen:
        error = seen.pop()
        if isinstance(error, BarkServeError):
            return error
        for nested in (error.__cause__, *getattr(error, "worker_failures", {}).values()):
            if isinstance(nested, BaseException):
                seen.append(nested)
    return None


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the training loop as rank `world_rank` of `world_size`."""
    import ray.train

    from barkserve.finetune.train import train

    context = ray.train.get_context()
    ranks = Ranks(context.get_world_rank(), context.get_world_size())
    result = train(config["dataset"], config["run"], config["options"], config["offline"], ranks=ranks)
    ray.train.report({"step": result.step, "stopped": result.stopped})
