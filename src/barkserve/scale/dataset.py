"""`quantizer make-dataset --ray`: the dataset's batches generated ahead of time on a pool of Ray actors.

`cloning.dataset.make_dataset` keeps its loop, files and resuming; only where a batch is generated
changes. A batch's audio depends on its items and its seed alone, and the loop's next batch depends on
which items of the previous one Bark ended too early. So the pool starts the batches the loop would
make if every item succeeds (up to `window` ahead, spread over the actors); the loop takes the one it
needs, and when a short item shifts the plan, the batches started for the old plan are dropped and the
new ones started. The dataset is then the same, file for file, as the one made on one machine.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from barkserve.cloning.dataset import BatchKey, DatasetOptions, generate_batch
from barkserve.config import ServerConfig
from barkserve.errors import DatasetError
from barkserve.scale.batch import DEFAULT_ATTEMPTS
from barkserve.scale.cluster import require_ray


@dataclass(frozen=True)
class ModelInfo:
    """What the dataset records of the model the actors sample (its canonical name and sample rate)."""

    name: str
    sample_rate: int


class DatasetWorker:
    """A Ray actor: one model load, then batch after batch of `generate_batch`."""

    def __init__(self, config: ServerConfig, options: DatasetOptions) -> None:
        from barkserve.models import load_model

        self.loaded = load_model(config.default_model, config)
        self.options = options

    def describe(self) -> dict[str, Any]:
        return {"name": self.loaded.name, "sample_rate": self.loaded.sample_rate, "pid": os.getpid()}

    def generate(self, texts: list[str], seed: int) -> list[tuple[Any, Any]]:
        return generate_batch(self.loaded, texts, seed, self.options)


class RayBatches:
    """A `BatchSource` for `make_dataset` on `replicas` actors (call `scale.connect` first); close it after."""

    def __init__(
        self,
        config: ServerConfig,
        texts: list[str],
        options: DatasetOptions,
        replicas: int = 1,
        gpus_per_replica: float = 0.0,
        cpus_per_replica: float = 1.0,
        attempts: int = DEFAULT_ATTEMPTS,
        window: int | None = None,
        worker: type[DatasetWorker] = DatasetWorker,
    ) -> None:
        ray = require_ray()
        self.ray, self.texts, self.attempts = ray, texts, attempts
        # A killed actor is started again (its model loaded again); its batch is sent again.
        actor = ray.remote(worker).options(num_cpus=cpus_per_replica, num_gpus=gpus_per_replica, max_restarts=-1)
        self.actors = [actor.remote(config, options) for _ in range(replicas)]
        # Batches started ahead of the loop: two per actor keeps each busy while the loop saves.
        self.window = window or 2 * replicas
        self.running: dict[BatchKey, Any] = {}  # batch -> its ObjectRef
        self.tries: dict[BatchKey, int] = {}
        self.started: list[BatchKey] = []  # every batch sent, in order (what the tests count)
        self._next = 0

    def model(self) -> ModelInfo:
        info = self.ray.get(self.actors[0].describe.remote())
        return ModelInfo(info["name"], info["sample_rate"])

    def __call__(self, key: BatchKey, ahead: list[BatchKey]) -> list[tuple[Any, Any]]:
        """The results of batch `key`; batches in `ahead` (the loop's plan after it) are started meanwhile."""
        wanted = [key, *ahead[: self.window - 1]]
        for stale in [k for k in self.running if k not in wanted]:  # the plan moved: not needed any more
            self._drop(stale)
        for planned in wanted:
            if planned not in self.running:
                self._send(planned)
        while True:
            try:
                results: list[tuple[Any, Any]] = self.ray.get(self.running.pop(key))
                return results
            except Exception as exc:  # the actor died or generation raised: send it again, a bounded number of times
                if self.tries[key] >= self.attempts:
                    raise DatasetError(
                        f"batch of items {list(key[0])} failed {self.tries[key]} time(s) on Ray: {exc}"
                    ) from exc
                self._send(key)

    def _send(self, key: BatchKey) -> None:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        texts = [self.texts[i % len(self.texts)] for i in key[0]]
        self.running[key] = actor.generate.remote(texts, key[1])
        self.tries[key] = self.tries.get(key, 0) + 1
        self.started.append(key)

    def _drop(self, key: BatchKey) -> None:
        ref = self.running.pop(key)
        with contextlib.suppress(Exception):  # already finished or running: its result is never read
            self.ray.cancel(ref)

    def close(self) -> None:
        for key in list(self.running):
            self._drop(key)
        for actor in self.actors:
            self.ray.kill(actor)

    def __enter__(self) -> RayBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
