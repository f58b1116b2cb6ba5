"""`barkserve batch`: every line of a JSONL file to an audio file, on this machine or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from barkserve.cli.options import friendly_errors, model_options
from barkserve.config import ServerConfig

RAY_OPTION = click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: alone, Ray's default cluster (RAY_ADDRESS, a local `ray start`, else a new local one); "
    "or HOST:PORT, ray://HOST:10001, auto, local. Needs: pip install 'barkserve[ray]'.",
)


def ray_flags(func: Any) -> Any:
    """The Ray pool's size and resources, shared by `batch` and `serve`."""
    options = [
        click.option(
            "--ray-gpus-per-replica",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="GPUs each engine replica reserves (e.g. 1, or 0.5 to pack two per GPU).",
        ),
        click.option(
            "--ray-cpus-per-replica",
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="CPUs each engine replica reserves.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@click.argument("input_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder of the audio files and manifest.jsonl; a rerun skips what is done there.")  # fmt: skip
@RAY_OPTION
@click.option("--ray-replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="Engine actors in the Ray pool (each loads the model once).")  # fmt: skip
@ray_flags
@click.option("--attempts", type=click.IntRange(1, 10), default=3, show_default=True,
              help="Tries of an item that fails in the engine (a bad voice or option fails at once).")  # fmt: skip
@model_options
@friendly_errors
def batch(
    input_file: Path,
    out_dir: Path,
    ray_address: str | None,
    ray_replicas: int,
    ray_gpus_per_replica: float,
    ray_cpus_per_replica: float,
    attempts: int,
    **flags: Any,
) -> None:
    """Speak each line of INPUT_FILE (JSONL: {"text", "id"?, "voice"?, "model"?, "format"?, seed, ...}) into --out.

    Every line is checked before anything is generated. Each item's file is written atomically and
    recorded in --out/manifest.jsonl (file, duration, timing, status or error); running the same
    command again makes only what is missing or failed. Exit status 1 when an item failed.
    """
    from barkserve.scale.batch import local_results, ray_results, run_batch
    from barkserve.scale.items import read_items
    from barkserve.synthesizer import Synthesizer

    items = read_items(input_file)
    config = ServerConfig.from_sources(flags)
    if ray_address is not None:
        from barkserve.scale import connect

        connect(ray_address)
        results = ray_results(config, ray_replicas, ray_gpus_per_replica, ray_cpus_per_replica, attempts)
        report = run_batch(items, out_dir, results, on_record=_echo)
    else:
        with Synthesizer(config) as synth:
            report = run_batch(items, out_dir, local_results(synth, attempts), on_record=_echo)
    click.echo(
        f"{len(report.made)} made, {len(report.skipped)} already done, {len(report.failed)} failed "
        f"of {report.total}; manifest: {out_dir / 'manifest.jsonl'}",
        err=True,
    )
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} item(s) failed; see the records with status 'failed'")


def _echo(record: dict[str, Any]) -> None:
    if record["status"] == "ok":
        click.echo(
            f"{record['file']}: {record['duration_sec']:.2f} s audio in {record['processing_sec']:.2f} s", err=True
        )
    else:
        error = record["error"]
        click.echo(f"line {record['line']} ({record['id']}) failed: {error['code']}: {error['message']}", err=True)
