"""`finetune promote`: a LoRA run that its evaluation did not find worse than the base, as a served adapter.

The run's LoRA matrices are renamed from peft's names to the adapter format (engine/adapters.py)
and written atomically into `ADAPTERS/NAME/`; a server started with `--adapters ADAPTERS` serves it
as `<base model>+NAME`. A fully fine-tuned run has no adapter: `finetune merge` saves it as a model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from barkserve.engine.adapters import STAGE_MODULES, AdapterInfo, check_name, tensor_name, write_adapter
from barkserve.errors import ConfigError
from barkserve.finetune import run as runs

# Where `finetune eval` writes its verdict in the run folder: {"worse": bool, "reason": str, ...}.
VERDICT = Path("eval") / "verdict.json"
_STAGE_OF = {attr: stage for stage, attr in STAGE_MODULES.items()}
# A LoRA weight as peft names it inside the BarkModel (adapter "default").
_PEFT_KEY = re.compile(
    r"(?:.*\.)?(semantic|coarse_acoustics|fine_acoustics)\.layers\.(\d+)\."
    r"(attn\.att_proj|attn\.out_proj|mlp\.in_proj|mlp\.out_proj)\.lora_([AB])\.default\.weight"
)


def read_verdict(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's evaluation verdict, or None when it was not evaluated.

    Raises:
        ConfigError: The verdict file is not a JSON object with a boolean `worse`.
    """
    path = Path(run_dir) / VERDICT
    if not path.is_file():
        return None
    try:
        verdict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); run `barkserve finetune eval {run_dir}` again") from exc
    if not isinstance(verdict, dict) or not isinstance(verdict.get("worse"), bool):
        raise ConfigError(f"{path} is not an evaluation verdict; run `barkserve finetune eval {run_dir}` again")
    return verdict


def adapter_tensors(trainable: dict[str, Any]) -> dict[str, Any]:
    """A LoRA run's trainable weights (peft's names) under the adapter format's names."""
    out = {}
    for key, value in trainable.items():
        match = _PEFT_KEY.fullmatch(key)
        if match is None:
            raise ConfigError(f"the run holds a weight that is not a LoRA matrix of a projection: {key}")
        attr, layer, projection, part = match.groups()
        out[tensor_name(_STAGE_OF[attr], int(layer), projection, part)] = value
    return out


def peft_state(tensors: dict[str, Any]) -> dict[str, Any]:
    """The adapter format's tensors under peft's names (the inverse of `adapter_tensors`)."""
    out = {}
    for stage, attr in STAGE_MODULES.items():
        for key, value in tensors.items():
            head, _, rest = key.partition(".")
            if head == stage:
                projection_path, _, part = rest.rpartition(".lora_")
                out[f"base_model.model.{attr}.{projection_path}.lora_{part}.default.weight"] = value
    return out


def promote(run_dir: str | Path, name: str, adapters_dir: str | Path, which: str = "best", force: bool = False) -> Path:
    """Export a LoRA run's checkpoint `which` as the adapter `adapters_dir/name`.

    Args:
        run_dir: A run folder of `finetune train` (LoRA).
        name: The adapter's name (served as `<base model>+name`).
        adapters_dir: The folder of adapter folders a server reads (`--adapters`).
        which: "best" (lowest held-out loss) or "last".
        force: Promote a run that was not evaluated, or that its evaluation found worse than the base.

    Returns:
        The adapter folder.

    Raises:
        ConfigError: Not a LoRA run, no verdict or a worse one (without `force`), no such checkpoint,
            a bad name, or the adapter exists.
    """
    run = Path(run_dir)
    record = runs.read_run(run)
    options = runs.options_of(record)
    if options.lora_rank is None:
        raise ConfigError(
            f"{run} is a full fine-tune: it has no adapter to promote. Save it as a model with "
            f"`barkserve finetune merge {run} --out DIR` and serve that folder (--models)"
        )
    check_name(name)
    verdict = read_verdict(run)
    if verdict is None and not force:
        raise ConfigError(
            f"{run} has not been evaluated ({VERDICT} is missing): run `barkserve finetune eval {run}` first, "
            "or promote it unevaluated with --force"
        )
    if verdict is not None and verdict["worse"] and not force:
        reason = verdict.get("reason") or "worse than the base model"
        raise ConfigError(f"{run} is worse than its base model: {reason}. Train it better, or promote it with --force")
    _, checkpoint = runs.run_checkpoint(run, which)
    step = runs.checkpoint_step(checkpoint)
    base = record["base_model"]
    base = str(Path(base).expanduser().resolve()) if Path(base).expanduser().is_dir() else base
    info = AdapterInfo(
        name=name, base_model=base, stages=options.stages, lora_rank=options.lora_rank,
        lora_alpha=options.lora_alpha or options.lora_rank, run=str(run.resolve()), checkpoint=which,
        step=step, eval=verdict,
    )  # fmt: skip
    return write_adapter(Path(adapters_dir) / name, info, adapter_tensors(checkpoint["trainable"]))
