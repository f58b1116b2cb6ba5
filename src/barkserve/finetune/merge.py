"""A trained run as a model: its weights on the base (LoRA merged in), saved as a checkpoint folder.

The folder loads through the same `from_pretrained` path as `suno/bark-small`, with the base's
tokenizer and presets, so `--model DIR` or `--models base,DIR` serves it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from barkserve.audio.files import storage_errors
from barkserve.errors import ConfigError
from barkserve.finetune import run as runs


def load_trained(run_dir: str | Path, which: str = "best", device: str = "cpu", offline: bool = False) -> tuple:
    """(the base `LoadedModel` with the run's weights in place, the peft model or None for full runs).

    With LoRA the adapters stay separate (unmerged): the BarkModel's stages run base + adapter.
    """
    from barkserve.config import ServerConfig
    from barkserve.models import load_model

    record = runs.read_run(run_dir)
    path, checkpoint = runs.run_checkpoint(run_dir, which)
    options = runs.options_of(record, device)
    base = record["base_model"]
    loaded = load_model(base, ServerConfig(model=base, device=device, dtype="float32", offline=offline))
    holder = runs.build_model(loaded.model, options)
    runs.load_trainable(holder, checkpoint["trainable"], str(path))
    holder.eval()
    return loaded, (holder if options.lora_rank is not None else None)


def merge_run(
    run_dir: str | Path, out_dir: str | Path, which: str = "best", offline: bool = False, device: str = "cpu"
) -> Path:
    """Save the run's model (LoRA merged into the base weights) as a full checkpoint folder.

    Raises:
        ConfigError: Not a run folder, no such checkpoint, or `out_dir` exists.
    """
    out = Path(out_dir)
    if out.exists():
        raise ConfigError(f"{out} exists; give a new folder for the merged model")
    loaded, peft_model = load_trained(run_dir, which, device, offline)
    model = peft_model.merge_and_unload() if peft_model is not None else loaded.model
    record = runs.read_run(run_dir)
    checkpoint = runs.load_checkpoint(Path(run_dir) / f"{which}.pt")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with storage_errors(out.parent):
        model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        copy_presets(record["base_model"], tmp, offline)
        about = {"base_model": record["base_model"], "run": str(Path(run_dir).resolve()), "checkpoint": which,
                 "step": checkpoint.get("step", checkpoint.get("state", {}).get("step")),
                 "options": record["options"]}  # fmt: skip
        (tmp / "finetune.json").write_text(json.dumps(about, indent=1), encoding="utf-8")
        tmp.rename(out)  # the folder appears complete or not at all
    return out


def copy_presets(base: str, out: Path, offline: bool) -> int:
    """Write the base checkpoint's presets into `out` in the hub layout; returns how many."""
    from barkserve.voices import PresetIndex, save_presets

    presets = PresetIndex(base, local_files_only=offline)
    return save_presets(out, {name: presets.load(name) for name in presets.names()})
