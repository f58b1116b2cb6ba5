"""A training run's folder: its options, the model it trains (LoRA or full), and atomic checkpoints.

Layout of a run folder:
    run.json      base model, dataset, options; a rerun with other ones is refused
    last.pt       the latest checkpoint: trained weights, optimizer, scheduler, step, early-stopping state
    best.pt       the trained weights with the lowest held-out loss so far
    metrics.json  base and per-evaluation held-out losses per stage, the best, why training stopped
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from barkserve.audio.files import atomic_write
from barkserve.errors import ConfigError
from barkserve.finetune.stages import STAGES, SUBMODULES

RUN_FORMAT = "barkserve-finetune-run"
# The attention (fused q/k/v and output) and MLP projections of every block of the trained stages.
_PROJECTIONS = r"\.layers\.\d+\.(attn\.(att_proj|out_proj)|mlp\.(in_proj|out_proj))"


@dataclass(frozen=True)
class TrainOptions:
    """How `train` fine-tunes; every field but `device` must match when a run resumes."""

    stages: tuple[str, ...] = STAGES  # which GPTs to train
    lora_rank: int | None = 16  # LoRA rank; None trains every weight of the stages (full fine-tuning)
    lora_alpha: int | None = None  # LoRA scale numerator (scale alpha / rank); None: the rank (scale 1)
    learning_rate: float = 1e-4
    batch_size: int = 4  # items per micro-batch, for each stage
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000  # optimizer steps
    warmup_steps: int = 50  # linear warm-up, then a cosine decay to 0 at max_steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradients are clipped to this global norm
    eval_every: int = 50  # steps between held-out evaluations
    save_every: int = 50  # steps between checkpoints (also written at the end and on Ctrl-C)
    patience: int = 5  # evaluations without a better held-out loss before stopping; 0: never stop early
    seed: int = 0  # of LoRA's initial weights, batch order, windows and dropout
    device: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
            raise ConfigError(f"stages must be some of {','.join(STAGES)}; got {','.join(stages) or 'none'}")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ConfigError(f"LoRA rank must be >= 1 (or use full fine-tuning); got {self.lora_rank}")
        positive = ("batch_size", "grad_accum", "max_steps", "eval_every", "save_every")
        if any(getattr(self, name) < 1 for name in positive) or self.learning_rate <= 0:
            raise ConfigError(f"{', '.join(positive)} and learning_rate must be positive")
        if self.warmup_steps < 0 or self.patience < 0 or self.max_grad_norm <= 0:
            raise ConfigError("warmup_steps and patience must be >= 0 and max_grad_norm > 0")

    @property
    def mode(self) -> str:
        return "full" if self.lora_rank is None else "lora"

    def recorded(self) -> dict[str, Any]:
        """The fields that decide the result (what run.json keeps)."""
        out = asdict(self)
        out.pop("device")
        out["stages"] = list(self.stages)
        return out


def lora_config(options: TrainOptions) -> Any:
    from peft import LoraConfig

    stages = "|".join(SUBMODULES[s] for s in options.stages)
    rank = options.lora_rank or 1
    return LoraConfig(
        r=rank,
        lora_alpha=options.lora_alpha or rank,
        lora_dropout=0.0,
        target_modules=rf"({stages}){_PROJECTIONS}",  # matched against each module's full name
    )


def build_model(model: Any, options: TrainOptions) -> Any:
    """Freeze `model` (a BarkModel) and make the stages' weights trainable; returns what holds them.

    With LoRA, adapters are inserted in place (the BarkModel's stages call them) and the peft model
    is returned; with full fine-tuning, the BarkModel itself.
    """
    import torch

    model.requires_grad_(False)
    if options.lora_rank is None:
        for stage in options.stages:
            getattr(model, SUBMODULES[stage]).requires_grad_(True)
        return model
    from peft import get_peft_model

    torch.manual_seed(options.seed)  # LoRA's A matrices start random (B at zero: the base model)
    return get_peft_model(model, lora_config(options))


def trainable_state(holder: Any) -> dict[str, Any]:
    """Copies of the trainable weights, on the CPU."""
    return {n: p.detach().cpu().clone() for n, p in holder.named_parameters() if p.requires_grad}


def load_trainable(holder: Any, state: dict[str, Any], label: str) -> None:
    """Copy saved trainable weights into `holder`; they must be exactly its trainable weights."""
    import torch

    params = {n: p for n, p in holder.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        raise ConfigError(f"{label} holds other weights than this run trains; was it made with other options?")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def dataset_id(meta: dict[str, Any]) -> str:
    """A fingerprint of a prepared dataset's items and split."""
    items = [(i["id"], i["split"]) for i in meta["items"]]
    return hashlib.sha1(json.dumps([meta["model"], items]).encode()).hexdigest()[:16]


def check_run(run_dir: Path, record: dict[str, Any]) -> None:
    """Write run.json, or check that an existing one describes the same run."""
    path = run_dir / "run.json"
    if not path.is_file():
        write_json(path, record)
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("format") != RUN_FORMAT:
        raise ConfigError(f"{run_dir} is not a fine-tuning run folder; choose another --out")
    for key, what in (("base_model", "base model"), ("dataset_id", "dataset"), ("options", "options")):
        if old.get(key) != record[key]:
            raise ConfigError(
                f"{run_dir} is a run of another {what} ({old.get(key)!r}, now {record[key]!r}); "
                "resume it with the same command, or train into a new --out folder"
            )


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no run.json; give a folder made by `barkserve finetune train`")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if record.get("format") != RUN_FORMAT:
        raise ConfigError(f"{path} is not a fine-tuning run")
    return record


def options_of(record: dict[str, Any], device: str = "auto") -> TrainOptions:
    return TrainOptions(**{**record["options"], "stages": tuple(record["options"]["stages"])}, device=device)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    """`torch.save` atomically: a failed write (a full disk) leaves the previous checkpoint as it was."""
    import torch

    atomic_write(path, lambda f: torch.save(data, f))


CHECKPOINTS = ("best", "last")


def run_checkpoint(run_dir: str | Path, which: str) -> tuple[Path, dict[str, Any]]:
    """The path and contents of a run's checkpoint `which` ("best" or "last"), or a clear error."""
    if which not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be one of {CHECKPOINTS}; got {which!r}")
    path = Path(run_dir) / f"{which}.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {which}.pt yet; train longer (a held-out check writes best.pt)")
    return path, load_checkpoint(path)


def checkpoint_step(checkpoint: dict[str, Any]) -> Any:
    """The training step a checkpoint was saved at (older checkpoints keep it in their state)."""
    return checkpoint.get("step", checkpoint.get("state", {}).get("step"))


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        data: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); delete it to start over") from exc
    return data
