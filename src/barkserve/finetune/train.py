"""The training loop: teacher-forced losses per stage, AdamW, warm-up + cosine, held-out checks, resume.

Every random choice of step `n` (which items, where their windows start, dropout) is drawn from
generators seeded by (seed, n), and the optimizer and scheduler states are checkpointed, so a run
stopped after any checkpoint and resumed gives the weights of a run that never stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.finetune import run as runs
from barkserve.finetune.prepare import Item, load_dataset
from barkserve.finetune.stages import stage_loss

StepHook = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a call to `train` did."""

    run_dir: Path
    step: int  # optimizer steps done in total
    stopped: str  # max_steps | early_stopping | interrupted
    base_heldout: dict[str, float]  # held-out loss per stage (mean NLL per token) before training
    best_heldout: dict[str, float] = field(default_factory=dict)
    best_step: int = 0


@dataclass
class _State:
    step: int = 0
    best_loss: float = float("inf")
    best_step: int = 0
    best_heldout: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    base_heldout: dict[str, float] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)


def heldout_losses(model: Any, geo: Any, stages: tuple[str, ...], items: list[Item], batch: int, device: Any) -> dict:
    """Mean negative log-likelihood per target token of each stage on the held-out items."""
    import torch

    model.eval()
    out = {}
    with torch.no_grad(), _autocast(device):
        for stage in stages:
            total, count = 0.0, 0
            for start in range(0, len(items), batch):
                loss, n = stage_loss(model, geo, stage, items[start : start + batch], None, device)
                total, count = total + float(loss), count + n
            out[stage] = total / max(count, 1)
    return out


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a data-parallel run (one process: rank 0 of 1).

    Rank r computes the micro-batches r, r + size, ... of each step; their gradients are summed over
    the processes (torch.distributed, set up by Ray Train), so every process takes the same step as
    one process computing all the micro-batches. Rank 0 alone scores the held-out set and writes the
    run folder, and tells the others what it decided.
    """

    rank: int = 0
    size: int = 1

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def micro_batches(self, grad_accum: int) -> range:
        return range(self.rank, grad_accum, self.size)

    def sum_gradients(self, params: list[Any]) -> None:
        if self.size == 1:
            return
        import torch
        import torch.distributed as dist

        for p in params:
            if p.grad is None:  # a rank without micro-batches this step
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed over the ranks (the step's mean losses from every rank's micro-batches)."""
        if self.size == 1:
            return values
        import torch
        import torch.distributed as dist

        total = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(total)
        return dict(zip(values, total.tolist(), strict=True))

    def share(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def train(
    dataset_dir: str | Path,
    run_dir: str | Path,
    options: runs.TrainOptions | None = None,
    offline: bool = False,
    on_step: StepHook | None = None,
    ranks: Ranks | None = None,
) -> TrainResult:
    """Fine-tune the dataset's base model; rerunning the same call resumes from the last checkpoint.

    Args:
        dataset_dir: A folder made by `prepare_dataset`.
        run_dir: The run folder (created if missing).
        options: What to train and how.
        offline: Load the base model only from local folders and the cache.
        on_step: Called after each optimizer step (and its evaluation and checkpoint) with the step
            and its losses; Ctrl-C (KeyboardInterrupt) there or anywhere in the loop saves a checkpoint.
        ranks: This process's place in a data-parallel run (`train_ray`); None: the only process.

    Returns:
        The `TrainResult`; the run folder holds last.pt, best.pt and metrics.json.

    Raises:
        DatasetError: The dataset is unfinished or unreadable.
        ConfigError: The run folder belongs to another base model, dataset or options.
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from barkserve.config import ServerConfig
    from barkserve.engine.inputs import BarkGeometry
    from barkserve.models import load_model

    options = options or runs.TrainOptions()
    ranks = ranks or Ranks()
    out = Path(run_dir)
    meta, train_items, heldout = load_dataset(dataset_dir)
    record = run_record(meta, dataset_dir, options)
    if ranks.writer:
        out.mkdir(parents=True, exist_ok=True)
        runs.check_run(out, record)
    ranks.share(None)  # the others read run.json once rank 0 has written or checked it
    runs.check_run(out, record)
    config = ServerConfig(model=meta["model"], device=options.device, dtype="float32", offline=offline)
    loaded = load_model(meta["model"], config)
    model, device = loaded.model, loaded.device
    holder = runs.build_model(model, options)
    geo = BarkGeometry.from_model(model)
    params = [p for p in holder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=options.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, options.warmup_steps, options.max_steps)
    state = _State()
    if (out / "last.pt").is_file():
        state = _restore(runs.load_checkpoint(out / "last.pt"), holder, optimizer, scheduler)
    elif ranks.writer:
        state.base_heldout = heldout_losses(model, geo, options.stages, heldout, options.batch_size, device)
    state = ranks.share(state)

    def save(stopped: str) -> None:
        if ranks.writer:
            runs.save_checkpoint(out / "last.pt", _checkpoint(state, holder, optimizer, scheduler))
            runs.write_json(out / "metrics.json", _metrics(state, stopped))

    stopped = "max_steps"
    try:
        while state.step < options.max_steps:
            if options.patience and state.bad_evals >= options.patience:
                stopped = "early_stopping"
                break
            losses = _step(model, geo, train_items, options, state.step, device, ranks)
            ranks.sum_gradients(params)
            losses = ranks.sum_values(losses)
            torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            log: dict[str, Any] = {"train": losses}
            if state.step % options.eval_every == 0 or state.step == options.max_steps:
                if ranks.writer:
                    log["heldout"] = heldout_losses(model, geo, options.stages, heldout, options.batch_size, device)
                    _record_eval(state, log, holder, out)
                state = ranks.share(state)  # early stopping is rank 0's decision
            if state.step % options.save_every == 0 or state.step == options.max_steps:
                save("running")
            if on_step is not None:
                on_step(state.step, log)
    except KeyboardInterrupt:
        # The weights and optimizer are those after `state.step` complete steps (a partial step has
        # only accumulated gradients, which are not saved), so this checkpoint resumes exactly.
        save("interrupted")
        return _result(out, state, "interrupted")
    save(stopped)
    return _result(out, state, stopped)


def run_record(meta: dict[str, Any], dataset_dir: str | Path, options: runs.TrainOptions) -> dict[str, Any]:
    """What run.json records of a run (checked against an existing run folder)."""
    return {"format": runs.RUN_FORMAT, "version": 1, "base_model": meta["model"],
            "dataset": str(Path(dataset_dir).resolve()), "dataset_id": runs.dataset_id(meta),
            "options": options.recorded()}  # fmt: skip


def _step(
    model: Any,
    geo: Any,
    items: list[Item],
    options: runs.TrainOptions,
    step: int,
    device: Any,
    ranks: Ranks | None = None,
) -> dict:
    """Forward and backward of this rank's micro-batches of one step; returns their mean loss per stage."""
    import torch

    ranks = ranks or Ranks()
    model.train()
    sums = dict.fromkeys(options.stages, 0.0)
    for micro in ranks.micro_batches(options.grad_accum):
        rng = np.random.default_rng([options.seed, step, micro])
        torch.manual_seed(options.seed * 1_000_003 + step * 101 + micro)  # dropout, where a config has any
        size = min(options.batch_size, len(items))
        batch = [items[i] for i in rng.choice(len(items), size=size, replace=False)]
        for stage in options.stages:
            with _autocast(device):
                loss, count = stage_loss(model, geo, stage, batch, rng, device)
                mean = loss / max(count, 1)
            # Each stage's graph is freed before the next is built: peak memory is one stage's.
            (mean / options.grad_accum).backward()
            sums[stage] += float(mean.detach()) / options.grad_accum
    return sums


def _autocast(device: Any) -> Any:
    """bf16 autocast on a GPU (weights and optimizer stay fp32); fp32 elsewhere."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _record_eval(state: _State, log: dict[str, Any], holder: Any, out: Path) -> None:
    total = sum(log["heldout"].values())
    state.evals.append({"step": state.step, **log, "heldout_total": total})
    if total < state.best_loss:
        state.best_loss, state.best_step, state.best_heldout, state.bad_evals = total, state.step, log["heldout"], 0
        runs.save_checkpoint(
            out / "best.pt", {"step": state.step, "heldout": log["heldout"], "trainable": runs.trainable_state(holder)}
        )
    else:
        state.bad_evals += 1


def _checkpoint(state: _State, holder: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    return {
        "state": {k: v for k, v in vars(state).items()},
        "trainable": runs.trainable_state(holder),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }


def _restore(data: dict[str, Any], holder: Any, optimizer: Any, scheduler: Any) -> _State:
    runs.load_trainable(holder, data["trainable"], "last.pt")
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    return _State(**data["state"])


def _metrics(state: _State, stopped: str) -> dict[str, Any]:
    return {
        "step": state.step,
        "stopped": stopped,
        "base_heldout": state.base_heldout,
        "best": {"step": state.best_step, "heldout": state.best_heldout},
        "evals": state.evals,
    }


def _result(out: Path, state: _State, stopped: str) -> TrainResult:
    return TrainResult(out, state.step, stopped, state.base_heldout, state.best_heldout, state.best_step)
