"""`barkserve clone` (a recording into a custom voice) and `barkserve quantizer make-dataset|train|eval`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from barkserve.bark import MAX_SEMANTIC_TOKENS
from barkserve.cli.batch import RAY_OPTION, ray_flags
from barkserve.cli.options import friendly_errors as _errors
from barkserve.config import DEVICES, DTYPES

HUBERT_HELP = "HuBERT hub id or folder. [facebook/hubert-base-ls960]"


def _model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--model", help="Bark hub id, alias or folder. [suno/bark-small]"),
        click.option("--device", type=click.Choice(DEVICES), help="Device. [auto]"),
        click.option("--dtype", type=click.Choice(DTYPES), help="Dtype. [auto]"),
        click.option("--offline/--online", default=None, help="Use only local folders and the HF cache."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(**flags: Any) -> Any:
    """The settings of a command: defaults, BARKSERVE_* variables, then its flags (the server's one path)."""
    from barkserve.config import ServerConfig

    return ServerConfig.from_sources(flags)


def _load(**flags: Any) -> Any:
    from barkserve.models import load_model

    config = _config(**flags)
    return load_model(config.default_model, config), config


def _featurizer_device(device: str | None) -> str:
    from barkserve.models import pick_device

    return pick_device(device or "auto")


@click.command("clone")
@click.argument("reference", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", required=True, help="Name of the new voice (letters, digits, _ and -).")
@click.option("--voices-dir", type=click.Path(path_type=Path, file_okay=False), help="Custom voices folder. [voices]")
@click.option(
    "--quantizer",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Quantizer checkpoint (ours or the community LSTM); without it the semantic prompt is left out.",
)
@click.option("--hubert", help=HUBERT_HELP)
@click.option("--layer", "hubert_layer", type=int, help="HuBERT layer. [the quantizer's]")
@_model_options
@_errors
def clone(reference: Path, name: str, **flags: Any) -> None:
    """Clone the voice in REFERENCE (wav, flac, mp3, ogg) into a custom voice NAME."""
    from barkserve.cloning import audio_in
    from barkserve.cloning.clone import Cloner
    from barkserve.models import ModelRegistry

    if flags.get("quantizer") is not None:
        flags["quantizer"] = str(flags["quantizer"])
    config = _config(**flags)
    cloner = Cloner.from_settings(config.cloning, ModelRegistry(config))
    cloner.max_bytes = audio_in.MAX_BYTES  # a local file is not an upload: the cloning module's own cap
    cloner.hubert = flags.get("hubert")  # not given: the quantizer's own HuBERT, as before
    result = cloner.clone(reference, name)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(json.dumps({**result.to_dict(), "path": str(result.path)}))


@click.group("quantizer")
def quantizer() -> None:
    """Make data for, train and evaluate the audio -> semantic-token quantizer used by voice cloning."""


@quantizer.command("make-dataset")
@click.option(
    "--texts",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="UTF-8 file, one text per line.",
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Dataset folder.")
@click.option("-n", "count", type=int, default=1000, show_default=True, help="Utterances in the folder.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-semantic-tokens", type=int, default=MAX_SEMANTIC_TOKENS, show_default=True)
@RAY_OPTION
@click.option("--ray-replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray: engine actors generating batches (each loads the model once).")  # fmt: skip
@ray_flags
@_model_options
@_errors
def make_dataset(
    texts: Path,
    out: Path,
    count: int,
    batch_size: int,
    seed: int,
    max_semantic_tokens: int,
    ray_address: str | None,
    ray_replicas: int,
    ray_gpus_per_replica: float,
    ray_cpus_per_replica: float,
    **flags: Any,
) -> None:
    """Generate (semantic tokens, audio) pairs with Bark; rerun to resume. With --ray, on a Ray actor pool."""
    from barkserve.cloning import dataset

    lines = dataset.read_texts(texts)
    options = dataset.DatasetOptions(n=count, batch_size=batch_size, seed=seed, max_semantic_tokens=max_semantic_tokens)
    progress: Any = click.progressbar(length=count, label="generating", file=sys.stderr)
    if ray_address is None:
        loaded, _ = _load(**flags)
        with progress as bar:
            dataset.make_dataset(loaded, lines, out, options, on_progress=bar.update)
    else:
        from barkserve.scale import connect
        from barkserve.scale.dataset import RayBatches

        connect(ray_address)
        pool = RayBatches(_config(**flags), lines, options, ray_replicas, ray_gpus_per_replica, ray_cpus_per_replica)
        with pool, progress as bar:
            dataset.make_dataset(pool.model(), lines, out, options, on_progress=bar.update, batches=pool)
    click.echo(f"{out}: {count} utterances; manifest {out / 'manifest.tsv'}")


def _pairs(directory: Path, hubert: str, layer: int, device: str | None, offline: bool) -> tuple[int, list[Any]]:
    """HuBERT width and the aligned pairs of a dataset folder."""
    from barkserve.cloning import dataset
    from barkserve.cloning.hubert import HubertFeaturizer

    featurizer = HubertFeaturizer(hubert, layer, _featurizer_device(device), local_files_only=offline)
    items = len(dataset.read_manifest(directory))
    progress: Any = click.progressbar(length=items, label="HuBERT features", file=sys.stderr)
    with progress as bar:
        pairs = dataset.load_pairs(directory, featurizer, on_progress=bar.update)
    return featurizer.hidden_size, pairs


@quantizer.command("train")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--method", type=click.Choice(["lstm", "linear", "kmeans"]), default="lstm", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Checkpoint to write.")
@click.option("--hubert", help=HUBERT_HELP)
@click.option("--layer", type=int, default=9, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--hidden-size", type=int, default=1024, show_default=True, help="LSTM width.")
@click.option("--held-out", type=float, default=0.1, show_default=True, help="Fraction kept for accuracy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--offline/--online", default=False)
@_errors
def train(
    directory: Path,
    method: str,
    out: Path,
    hubert: str | None,
    layer: int,
    epochs: int,
    lr: float,
    batch_size: int,
    hidden_size: int,
    held_out: float,
    seed: int,
    device: str,
    offline: bool,
) -> None:
    """Extract (cached) HuBERT features of DIRECTORY, train a quantizer, report held-out accuracy."""
    from barkserve.cloning.quantizer import QuantizerInfo
    from barkserve.cloning.train import EpochStats, TrainOptions, split, train_quantizer

    hubert = _config(hubert=hubert).hubert

    width, pairs = _pairs(directory, hubert, layer, device, offline)
    training, held = split(pairs, held_out, seed)
    info = QuantizerInfo(method=method, hubert=hubert, layer=layer, input_size=width, hidden_size=hidden_size)
    options = TrainOptions(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=_featurizer_device(device))
    click.echo(f"{len(training)} training and {len(held)} held-out utterances; method {method}", err=True)

    def report(s: EpochStats) -> None:
        click.echo(f"epoch {s.epoch}: loss {s.loss:.4f}  held-out accuracy {s.accuracy:.4f}")

    trained, _ = train_quantizer(training, held, info, options, on_epoch=report)
    trained.save(out)
    click.echo(f"saved {out}")


@quantizer.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--hubert", help="HuBERT to use; must be the one the quantizer was trained on. [its own]")
@click.option("--layer", type=int, help="HuBERT layer; must match the quantizer's. [its own]")
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--offline/--online", default=False)
@_errors
def evaluate(
    checkpoint: Path, directory: Path, hubert: str | None, layer: int | None, device: str, offline: bool
) -> None:
    """Report the token accuracy of a saved quantizer on every item of DIRECTORY."""
    from barkserve.cloning.quantizer import load_quantizer
    from barkserve.cloning.train import accuracy

    q = load_quantizer(checkpoint)
    hubert, layer = hubert or q.info.hubert, layer or q.info.layer
    q.check_features(hubert, layer, q.info.input_size)
    width, pairs = _pairs(directory, hubert, layer, device, offline)
    q.check_features(hubert, layer, width)
    click.echo(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                "method": q.info.method,
                "utterances": len(pairs),
                "accuracy": round(accuracy(q, pairs), 4),
            }
        )
    )
