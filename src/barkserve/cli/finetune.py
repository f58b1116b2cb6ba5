"""`barkserve finetune prepare|train|merge`: recordings -> training items -> a trained run -> a model folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from barkserve.cli.batch import RAY_OPTION
from barkserve.cli.options import MOS_MODEL, friendly_errors
from barkserve.config import DEVICES

DEVICE_OPTION = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
OFFLINE_OPTION = click.option("--offline/--online", default=False, help="Use only local folders and the HF cache.")


@click.group("finetune")
def finetune() -> None:
    """Fine-tune Bark on your recordings (LoRA or full) and serve the result as a model."""


@finetune.command("prepare")
@click.argument("data", type=click.Path(path_type=Path, exists=True))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Prepared folder.")
@click.option("--model", default="suno/bark-small", show_default=True, help="Base checkpoint (tokenizer, codec).")
@click.option("--quantizer", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True,
              help="HuBERT -> semantic tokens (`barkserve quantizer train`, or the community LSTM).")  # fmt: skip
@click.option("--hubert", help="HuBERT hub id or folder. [the quantizer's]")
@click.option("--layer", type=int, help="HuBERT layer. [the quantizer's]")
@click.option("--heldout", type=float, default=0.1, show_default=True, help="Share of items held out.")
@click.option("--split-by", type=click.Choice(["file", "speaker"]), default="file", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the held-out split.")
@click.option("--max-seconds", type=float, default=14.0, show_default=True, help="Longest clip of speech.")
@click.option("--skip-bad", is_flag=True, help="Leave out unusable recordings instead of stopping.")
@RAY_OPTION
@click.option("--ray-workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Ray actors encoding recordings with --ray (each loads the encoders once).")  # fmt: skip
@DEVICE_OPTION
@OFFLINE_OPTION
@friendly_errors
def prepare(
    data: Path, out: Path, model: str, quantizer: Path, ray_address: str | None, ray_workers: int, **flags: Any
) -> None:
    """Turn DATA (LJSpeech folder, .jsonl/.csv of audio,text, or audio + .txt folder) into training items."""
    from barkserve.config import canonical_model
    from barkserve.finetune.prepare import PrepareOptions, load_encoders, prepare_dataset
    from barkserve.finetune.sources import read_entries

    options = PrepareOptions(
        heldout=flags["heldout"],
        split_by=flags["split_by"],
        seed=flags["seed"],
        max_seconds=flags["max_seconds"],
        skip_bad=flags["skip_bad"],
    )
    count = len(read_entries(data))  # pairing problems are reported before any model loads
    load = {"model": canonical_model(model), "quantizer": quantizer, "hubert": flags["hubert"],
            "layer": flags["layer"], "device": flags["device"], "offline": flags["offline"]}  # fmt: skip
    if ray_address is not None:
        from barkserve.finetune.ray_prepare import prepare_ray
        from barkserve.scale.cluster import connect

        connect(ray_address)
        with click.progressbar(length=count, label="encoding", file=sys.stderr) as bar:
            prepare_ray(data, out, load, options, ray_workers, on_progress=bar.update)
    else:
        encoders = load_encoders(**load)
        with click.progressbar(length=count, label="encoding", file=sys.stderr) as bar:
            prepare_dataset(data, out, encoders, options, on_progress=bar.update)
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    splits = [item["split"] for item in meta["items"]]
    summary = {"out": str(out), "train": splits.count("train"), "heldout": splits.count("heldout")}
    click.echo(json.dumps({**summary, "skipped": len(meta["skipped"])}))


@finetune.command("train")
@click.argument("dataset", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Run folder.")
@click.option("--stages", default="semantic,coarse,fine", show_default=True, help="GPTs to train.")
@click.option("--lora", "lora_rank", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--full", is_flag=True, help="Train every weight of the stages instead of LoRA adapters.")
@click.option("--lora-alpha", type=int, help="LoRA alpha (scale alpha/rank). [the rank]")
@click.option("--lr", "learning_rate", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per step.")
@click.option("--steps", "max_steps", type=int, default=1000, show_default=True)
@click.option("--warmup", "warmup_steps", type=int, default=50, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True)
@click.option("--eval-every", type=int, default=50, show_default=True, help="Steps between held-out checks.")
@click.option("--save-every", type=int, default=50, show_default=True, help="Steps between checkpoints.")
@click.option("--patience", type=int, default=5, show_default=True, help="Checks without progress before stopping.")
@click.option("--seed", type=int, default=0, show_default=True)
@RAY_OPTION
@click.option("--ray-workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Data-parallel workers with --ray (--grad-accum must be at least this).")  # fmt: skip
@DEVICE_OPTION
@OFFLINE_OPTION
@friendly_errors
def train(
    dataset: Path, out: Path, stages: str, full: bool, offline: bool, ray_address: str | None, ray_workers: int,
    **flags: Any,
) -> None:  # fmt: skip
    """Fine-tune on a prepared DATASET into the run folder; rerun the same command to resume."""
    from barkserve.finetune.run import TrainOptions
    from barkserve.finetune.train import train as run_training

    if full:
        flags["lora_rank"] = None
    options = TrainOptions(stages=tuple(s.strip() for s in stages.split(",") if s.strip()), **flags)
    if ray_address is not None:
        from barkserve.finetune.ray_train import train_ray
        from barkserve.scale.cluster import connect

        connect(ray_address)
        result = train_ray(dataset, out, options, ray_workers, offline=offline)
    else:
        with Progress(options.max_steps) as bar:
            result = run_training(dataset, out, options, offline=offline, on_step=bar.step)
    summary = {"run": str(out), "step": result.step, "stopped": result.stopped, "base_heldout": result.base_heldout,
               "best_heldout": result.best_heldout, "best_step": result.best_step}  # fmt: skip
    click.echo(json.dumps(summary))
    if result.stopped == "interrupted":
        click.echo(f"interrupted at step {result.step}; checkpoint saved. Rerun the command to resume", err=True)
        sys.exit(130)


class Progress:
    """Training steps as a bar on stderr (tqdm, like `barkserve eval`'s), with the latest losses."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Progress:
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, unit="step", desc="train", file=sys.stderr)
        return self

    def step(self, step: int, log: dict[str, Any]) -> None:
        if self._bar.n == 0 and step > 1:
            self._bar.update(step - 1)  # a resumed run starts at its checkpoint
        train = " ".join(f"{k}={v:.3f}" for k, v in log["train"].items())
        self._bar.set_postfix_str(f"train {train}")
        self._bar.update(1)
        if "heldout" in log:
            held = " ".join(f"{k}={v:.4f}" for k, v in log["heldout"].items())
            self._bar.write(f"step {step}: held-out {held}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


@finetune.command("merge")
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="New model folder.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@OFFLINE_OPTION
@friendly_errors
def merge(run: Path, out: Path, checkpoint: str, offline: bool) -> None:
    """Save RUN's model (LoRA merged in) as a checkpoint folder: serve it with --model/--models OUT."""
    from barkserve.finetune.merge import merge_run

    path = merge_run(run, out, checkpoint, offline=offline)
    click.echo(json.dumps({"model": str(path), "checkpoint": checkpoint}))


@finetune.command("eval")
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--asr-model", help="Whisper checkpoint (hub id or folder) for WER/CER. [asr_model setting]")
@click.option("--speaker-model", help="Speaker checkpoint for similarity; '' skips it. [speaker_model setting]")
@click.option("--mos-model", type=MOS_MODEL, help="Naturalness predictor; '' skips it. [mos_model]")
@click.option("--voice", help="Voice of every line (preset or custom name). [a prompt cut from a training clip]")
@click.option("--voices-dir", type=click.Path(path_type=Path, file_okay=False), help="Folder of custom voices.")
@click.option("--language", default="en", show_default=True, help="Language of the held-out lines.")
@click.option("--seed", type=click.IntRange(0, 2**62), default=0, show_default=True, help="Line i uses seed + i.")
@click.option("--max-duration", type=float, help="Seconds of audio per line at most. [Bark's]")
@click.option("--bootstrap", "resamples", type=click.IntRange(100, 100_000), default=1000, show_default=True)
@click.option("--save-audio", is_flag=True, help="Save every sample under RUN/eval/audio/.")
@DEVICE_OPTION
@OFFLINE_OPTION
@friendly_errors
def evaluate(run: Path, voices_dir: Path | None, **flags: Any) -> None:
    """Synthesize the held-out lines with the base model and with RUN's fine-tune (same seeds, same voice);
    write RUN/eval/report.json, report.html and verdict.json (worse: WER above the base's beyond the 95% CI)."""
    from barkserve.finetune.eval import FinetuneEvalOptions, evaluate_run

    options = FinetuneEvalOptions(**flags, voices_dir=None if voices_dir is None else str(voices_dir))
    with click.progressbar(length=2 * heldout_count(run), label="eval", file=sys.stderr) as bar:
        verdict = evaluate_run(run, options, on_sample=lambda config: bar.update(1))
    click.echo(json.dumps({**verdict, "report": str(run / "eval" / "report.json")}))


def heldout_count(run: Path) -> int:
    from barkserve.finetune.run import read_run

    dataset = Path(read_run(run)["dataset"]) / "dataset.json"
    if not dataset.is_file():
        return 0
    return sum(1 for item in json.loads(dataset.read_text(encoding="utf-8"))["items"] if item["split"] == "heldout")


@finetune.command("promote")
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--name", required=True, help="The adapter's name: requests use MODEL+NAME.")
@click.option("--adapters", "adapters_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The folder of adapters the server reads (serve --adapters).")  # fmt: skip
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--force", is_flag=True, help="Promote a run not evaluated, or one its evaluation found worse.")
@friendly_errors
def promote(run: Path, name: str, adapters_dir: Path, checkpoint: str, force: bool) -> None:
    """Export RUN's LoRA as adapter NAME in --adapters, if `finetune eval` did not find it worse than the base."""
    from barkserve.finetune.promote import promote as promote_run

    path = promote_run(run, name, adapters_dir, checkpoint, force=force)
    click.echo(json.dumps({"adapter": str(path), "name": name, "checkpoint": checkpoint}))
