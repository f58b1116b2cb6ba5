"""`barkserve serve` (the HTTP server) and `barkserve make-tiny` (a random checkpoint for offline use)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from barkserve.cli.batch import RAY_OPTION, ray_flags
from barkserve.cli.options import friendly_errors, job_options, model_options, scorer_options
from barkserve.config import AUTH_MODES, LOG_FORMATS, ServerConfig
from barkserve.errors import ConfigError

# Set to 1 by the container image (packaging/build-image.sh): `serve` then refuses to run as root.
REFUSE_ROOT_ENV = "BARKSERVE_REFUSE_ROOT"


@click.command()
@model_options
@scorer_options
@click.option("--served-model-name",
              help="Name the default model is shown and requested under. [hub id, or the folder's name]")  # fmt: skip
@click.option("--host", help="Address to listen on. [127.0.0.1]")
@click.option("--port", type=int, help="Port. [8000]")
@click.option("--threads", type=int, help="WSGI worker threads. [8]")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), help="Access log lines: plain or json. [plain]")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Where audio files are written. [output]")
@click.option("--max-text-chars", type=int, help="Longest accepted text. [20000]")
@click.option("--max-duration-sec", type=float, help="Default cap on each chunk's audio, seconds. [none]")
@click.option("--preload/--no-preload", default=None, help="Load the models at start-up, not on first use.")
@job_options
@click.option("--hubert", help="HuBERT for cloning (hub id or folder). [facebook/hubert-base-ls960]")
@click.option("--quantizer", help="Audio-to-semantic quantizer checkpoint for cloning. [none]")
@click.option("--align-model", help="CTC checkpoint that times caption words. [facebook/wav2vec2-base-960h]")
@click.option("--job-lease-sec", type=float, help="Take over a crashed process's jobs after this long. [60]")
@click.option("--job-retention-hours", type=float, help="Keep finished job audio this long. [168]")
@RAY_OPTION
@click.option("--ray-min-replicas", type=click.IntRange(min=0), default=1, show_default=True,
              help="Ray: fewest engine replicas per model (autoscaling on ongoing requests).")  # fmt: skip
@click.option("--ray-max-replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray: most engine replicas per model.")  # fmt: skip
@ray_flags
@click.option("--auth", type=click.Choice(AUTH_MODES),
              help="API keys: auto (beyond loopback, or once a key exists), on, off. [auto]")  # fmt: skip
@click.option("--public-metrics/--private-metrics", default=None, help="GET /metrics without a key. [public]")
@click.option("--limits-storage", help="Per-key counters: memory:// or a shared redis:// URI. [memory://]")
@click.option("--max-queue-depth", type=int, help="503 new synthesis while more chunks wait; 0: none. [256]")
@friendly_errors
def serve(**flags: Any) -> None:
    """Run the HTTP server (waitress, a production WSGI server), or with --ray on Ray Serve."""
    refuse_root(os.environ)
    ray_address = flags.pop("ray_address")
    ray_settings = {name: flags.pop(name) for name in list(flags) if name.startswith("ray_")}
    if ray_address is not None:
        serve_on_ray(ServerConfig.from_sources(flags), ray_address, ray_settings)
        return

    from barkserve.models import pick_device, pick_dtype
    from barkserve.server import create_app
    from barkserve.server.wsgi import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig.from_sources(flags)
    if config.log_format == "json":  # the access log's lines are JSON objects already: no prefix
        access = logging.getLogger("barkserve.access")
        raw = logging.StreamHandler()
        raw.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(raw)
        access.propagate = False
    app = create_app(config)
    if config.preload:
        app.extensions["barkserve"].synthesizer.registry.preload()
    device = pick_device(config.device)
    dtype = str(pick_dtype(config.dtype, device)).replace("torch.", "")
    keys = "required" if app.extensions["barkserve.access"].enforced() else "off"
    logging.getLogger("barkserve").info(
        "barkserve listening on http://%s:%d model=%s device=%s dtype=%s threads=%d api_keys=%s",
        config.host, config.port, config.default_model, device, dtype, config.threads, keys,
    )  # fmt: skip
    state = app.extensions["barkserve"]
    # SIGTERM (service managers) stops like Ctrl-C: the job runner and the engines end cleanly;
    # unfinished jobs resume at the next start.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = make_server(app, waitress_settings(config))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        state.runner.stop(timeout=10)
        state.synthesizer.close()
        logging.getLogger("barkserve").info("barkserve stopped")


def refuse_root(env: Any) -> None:
    """Raise ConfigError when running as root where the image asks not to (BARKSERVE_REFUSE_ROOT=1).

    A server that parses uploads (books, PDFs, audio) should not hold root in its container: a flaw in
    a parser would own the container and whatever it mounts. Outside the image nothing is refused.
    """
    if os.geteuid() != 0 or env.get(REFUSE_ROOT_ENV, "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    raise ConfigError(
        "barkserve refuses to run as root in this image: the server parses untrusted uploads, and as root a "
        "flaw in a parser would own the container and its volumes. Run it as the image's user (the default; "
        "podman/docker --user 10001, Kubernetes runAsNonRoot) or any non-root UID with group 0; "
        f"to run as root anyway, set {REFUSE_ROOT_ENV}=0"
    )


def serve_on_ray(config: ServerConfig, address: str, settings: dict[str, Any]) -> None:
    """Deploy the API on Ray Serve (ingress + engine replicas) and keep it up until Ctrl-C."""
    import time

    from barkserve.scale import connect
    from barkserve.scale.serve import RayServeConfig, deploy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scaling = RayServeConfig(
        min_replicas=settings["ray_min_replicas"],
        max_replicas=settings["ray_max_replicas"],
        gpus_per_replica=settings["ray_gpus_per_replica"],
        cpus_per_replica=settings["ray_cpus_per_replica"],
    )
    ray = connect(address)
    deploy(config, scaling)
    logging.getLogger("barkserve").info(
        "barkserve on Ray Serve at http://%s:%d model=%s replicas=%d-%d gpus/replica=%s",
        config.host, config.port, config.default_model, scaling.min_replicas, scaling.max_replicas,
        scaling.gpus_per_replica,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        from ray import serve as ray_serve

        ray_serve.shutdown()
        ray.shutdown()


def waitress_settings(config: ServerConfig) -> dict[str, Any]:
    """waitress's limits, derived from barkserve's settings so the app's own checks are never bypassed.

    waitress buffers a body before the app sees it: capping it at the largest body a route accepts
    keeps a client from filling memory or disk with a body the app would refuse anyway. Idle and
    half-open connections cost no worker thread and are closed after `idle_timeout_sec`; poll()
    instead of select() lets the server hold more than 1024 of them.
    """
    return {
        "host": config.host,
        "port": config.port,
        "threads": config.threads,
        "ident": "barkserve",
        "max_request_body_size": config.max_request_bytes,
        "connection_limit": config.max_connections,
        "channel_timeout": config.idle_timeout_sec,
        "cleanup_interval": min(30.0, config.idle_timeout_sec),
        "asyncore_use_poll": True,
    }


@click.command("make-tiny")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--presets-from", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of real Bark .npz prompts to ship as presets (random prompts otherwise).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--with-scorers", is_flag=True, help="Also write tiny random scorers in DIRECTORY/asr and /speaker.")
def make_tiny(directory: Path, presets_from: Path | None, seed: int, with_scorers: bool) -> None:
    """Build a tiny random Bark checkpoint in DIRECTORY (offline testing; its audio is noise)."""
    from barkserve.testing.tiny import make_tiny_checkpoint, make_tiny_scorers

    make_tiny_checkpoint(directory, presets_from=presets_from, seed=seed)
    click.echo(f"tiny random Bark checkpoint written to {directory}; run: barkserve serve --model {directory}")
    if with_scorers:
        asr, speaker = make_tiny_scorers(directory, seed=seed)
        click.echo(f"tiny random scorers written to {asr} (ASR) and {speaker} (speaker); their scores mean nothing")
