"""An engine for the Ray tests whose chosen seeds wait at a gate (files), so a test knows when a request
is inside a replica, and holds it there, without timing; and dataset workers that misbehave on cue."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from barkserve.engine.factory import make_engine


class GatedEngine:
    """The real engine; a gated seed's request writes `started-<seed>` (its pid), then waits for `open-<seed>`."""

    def __init__(self, inner: Any, gate_dir: Path, gated: frozenset[int]) -> None:
        self.inner, self.gate_dir, self.gated = inner, gate_dir, gated
        self.sample_rate = inner.sample_rate

    def tokenize(self, text: str) -> Any:
        return self.inner.tokenize(text)

    def load(self) -> Any:
        return self.inner.load()

    def close(self) -> None:
        self.inner.close()

    def generate(self, request: Any) -> Any:
        seed = request.options.seed
        if seed in self.gated:
            (self.gate_dir / f"started-{seed}").write_text(str(os.getpid()))
            while not (self.gate_dir / f"open-{seed}").exists():
                time.sleep(0.05)
        return self.inner.generate(request)


class GatedFactory:
    """`engine_factory` of the replicas: the configured engine behind a gate."""

    def __init__(self, config: Any, gate_dir: Path, gated: frozenset[int]) -> None:
        self.config, self.gate_dir, self.gated = config, gate_dir, gated

    def __call__(self, loaded: Any) -> GatedEngine:
        return GatedEngine(make_engine(loaded, self.config.engine), self.gate_dir, self.gated)


def wait_for(path: Path, what: str) -> str:
    """The file's text once it exists (a guard against a hang, not a speed check)."""
    for _ in range(6000):
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened ({path.name} did not appear)")


def shorten(seed: int, short_seed: int, results: list[Any]) -> list[Any]:
    """The batch with seed `short_seed` has its second item cut to 3 tokens, as if Bark ended it early."""
    if seed != short_seed:
        return results
    tokens, audio = results[1]
    return [results[0], (tokens[:3], audio), *results[2:]]


def short_worker(short_seed: int) -> Any:
    """A `DatasetWorker` class whose batch `short_seed` comes back with a too-short item."""
    from barkserve.scale.dataset import DatasetWorker

    class ShortWorker(DatasetWorker):
        def generate(self, texts: list[str], seed: int) -> list[Any]:
            return shorten(seed, short_seed, super().generate(texts, seed))

    return ShortWorker


def flaky_worker(counter: Path, failures: int) -> Any:
    """A `DatasetWorker` class whose first `failures` batches (counted in a file, across actors) raise."""
    from barkserve.scale.dataset import DatasetWorker

    class FlakyWorker(DatasetWorker):
        def generate(self, texts: list[str], seed: int) -> list[Any]:
            calls = int(counter.read_text() or 0) + 1 if counter.exists() else 1
            counter.write_text(str(calls))
            if calls <= failures:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super().generate(texts, seed)

    return FlakyWorker


def dying_worker(marker: Path) -> Any:
    """A `ChunkWorker` class whose process dies in its first run (the marker file tells the next one)."""
    from barkserve.scale.book import ChunkWorker

    class DyingWorker(ChunkWorker):
        def run(self, request: Any, chunks: list[int], voice: Any) -> Any:
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the actor's process dies with the chunk in flight
            yield from super().run(request, chunks, voice)

    return DyingWorker
