"""`finetune prepare --ray`: the recordings encoded by Ray actors, each loading the encoders once.

Only the encoding moves: every actor runs `prepare.try_encode` (the code one process runs) on the
recordings it is dealt, and sends back the targets or the problem. The driver does the rest as
`prepare_dataset` does, in the same code (`prepare.write_dataset`): it checks the folder was made with
the same encoders, skips the items already there (a rerun resumes, with or without `--ray`), writes
each item atomically as its result comes back in the listed order, lists the problems by line, and
writes the split and dataset.json. So the folder is the one a single process makes, file for file.
The recordings, base model and quantizer must be readable by every actor at the same paths (one
machine, or a shared filesystem; actors work in the driver's directory when their machine has it, so
relative paths mean the same); the prepared folder is written by the driver only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from barkserve.errors import BarkServeError, ConfigError
from barkserve.finetune.prepare import Encoded, PrepareOptions, write_dataset
from barkserve.finetune.sources import Entry, read_entries


class EncodeWorker:
    """One Ray actor: the encoders, loaded once by `start`; `encode` is `prepare.try_encode`."""

    def __init__(self, load: dict[str, Any], cwd: str) -> None:
        self.load, self.cwd = load, cwd
        self.encoders: Any = None

    def start(self) -> dict[str, Any]:
        """Load the encoders (a method, not `__init__`, so that a load error comes back as it was raised)."""
        from barkserve.finetune.prepare import load_encoders

        if os.path.isdir(self.cwd):  # relative paths (data, model, quantizer) mean what they mean to the driver
            os.chdir(self.cwd)
        self.encoders = load_encoders(**self.load)
        return dict(self.encoders.describe())

    def encode(self, entry: Entry, max_seconds: float) -> Encoded:
        from barkserve.finetune.prepare import try_encode

        return try_encode(entry, self.encoders, max_seconds)


def prepare_ray(
    data: str | Path,
    out_dir: str | Path,
    load: dict[str, Any],
    options: PrepareOptions | None = None,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """`prepare_dataset` with the encoding spread over `workers` Ray actors on the cluster this process
    joined (`scale.cluster.connect`; a new local one if none).

    Args:
        load: `prepare.load_encoders`' arguments (model, quantizer, hubert, layer, device, offline):
            every actor loads its own encoders.

    Raises:
        ConfigError: Fewer than one worker.
        DatasetError: As `prepare_dataset` (pairing problems before any actor starts).
        BarkServeError: What an actor raised loading the encoders (ModelUnavailable, QuantizerError).
    """
    import ray
    from ray.util import ActorPool

    if workers < 1:
        raise ConfigError(f"--ray-workers must be at least 1; got {workers}")
    options = options or PrepareOptions()
    read_entries(data)  # pairing problems are reported before any actor loads a model
    if not ray.is_initialized():
        ray.init()
    device = str(load.get("device", "auto"))
    gpu = device.startswith("cuda") or (device == "auto" and ray.cluster_resources().get("GPU", 0) >= workers)
    actor: Any = ray.remote(EncodeWorker).options(num_cpus=1, num_gpus=1 if gpu else 0)
    actors: list[Any] = [actor.remote(load, os.getcwd()) for _ in range(workers)]
    max_seconds = options.max_seconds

    def encode_all(todo: list[Entry]) -> Iterator[Encoded]:
        pool = ActorPool(actors)
        # In the listed order, each as soon as it and those before it are back.
        yield from pool.map(lambda worker, entry: worker.encode.remote(entry, max_seconds), todo)

    try:
        made_with = ray.get([worker.start.remote() for worker in actors])[0]
        return write_dataset(data, out_dir, made_with, encode_all, options, on_progress)
    except ray.exceptions.RayTaskError as exc:  # Ray wraps an actor's error in its own; ours come out as they were
        if isinstance(exc.cause, BarkServeError):
            raise exc.cause from exc
        raise
    finally:
        for worker in actors:
            ray.kill(worker)


__all__ = ["prepare_ray"]
