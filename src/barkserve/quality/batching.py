"""`ScoringQueue`: chunks to score, from any request and any thread, scored together.

Quality control judges each chunk as it is made. Scored one at a time, every chunk pays a whole
forward pass of each scorer model; batched, the speaker encoder scores eight chunks 3-9x faster than
one by one on a CPU, Distill-MOS about 2x, DNSMOS about 1x (its cost is per 9 s window: nothing for a
batch to share there; benchmarks/results/cpu-2core-qc-scoring-batch*.json). The queue
has one worker thread per scorer: while it runs one batch, the chunks that arrive (the later chunks
of the same request, other requests' chunks) wait, and its next forward pass takes them all, up to
the scorer's `batch_size`. Nothing waits on a timer: a chunk that finds the worker idle is scored at
once, alone; batches form exactly when chunks arrive faster than they are scored.

The speaker similarity to a reference is not part of the batch (each request has its own
reference); `Scores.embedding` is, and `with_reference` computes the similarity afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from barkserve.quality.speaker import similarity

# `quality.scorer.Scores`; named here as Any because the scorer imports this module (no import cycle).
Scores = Any


class BatchScorer(Protocol):
    """What the queue needs of a `quality.scorer.Scorer`."""

    config: Any  # its `batch_size` is the queue's largest batch

    def score_batch(
        self, clips: Any, texts: Any, languages: Any, reference_embedding: Any = None, rate: int = ...
    ) -> list[Any]: ...


@dataclass(eq=False)
class _Item:
    audio: np.ndarray
    rate: int
    text: str
    language: str
    future: Future[Scores] = field(default_factory=Future)


class ScoringQueue:
    """Scores chunks submitted from any thread, as many per `Scorer.score_batch` call as are waiting.

    Args:
        scorer: The scorer whose models run the batches.
        max_batch: Chunks per forward pass at most (the scorer's `batch_size` when None).
    """

    def __init__(self, scorer: BatchScorer, max_batch: int | None = None) -> None:
        self.scorer = scorer
        self.max_batch = max_batch or scorer.config.batch_size
        self._pending: list[_Item] = []
        self._held = 0
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        # Chunks per forward pass so far, in order (what the tests and the logs read).
        self.batches: list[int] = []

    def submit(self, audio: np.ndarray, rate: int, text: str, language: str) -> Future[Scores]:
        """Queue one chunk; its `Scores` (no similarity: see `with_reference`) arrive in the future."""
        return self.submit_many([(audio, rate, text, language)])[0]

    def submit_many(self, chunks: Sequence[tuple[np.ndarray, int, str, str]]) -> list[Future[Scores]]:
        """Queue several chunks at once: the worker never sees some of them without the others, so chunks
        made together are scored together (up to `max_batch`)."""
        items = [_Item(audio, rate, text, language) for audio, rate, text, language in chunks]
        with self._changed:
            self._pending.extend(items)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="barkserve-scoring", daemon=True)
                self._worker.start()
            self._changed.notify_all()
        return [item.future for item in items]

    def score(self, audio: np.ndarray, rate: int, text: str, language: str) -> Scores:
        """Submit one chunk and wait for its scores (raises what the scorer raised)."""
        return self.submit(audio, rate, text, language).result()

    @property
    def pending(self) -> int:
        """Chunks waiting for a forward pass."""
        with self._changed:
            return len(self._pending)

    def wait_pending(self, count: int) -> None:
        """Block until at least `count` chunks are waiting (for callers that hold the queue)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._pending) >= count)

    @contextmanager
    def held(self) -> Iterator[None]:
        """While held, chunks are queued but not scored; on leaving, they go in as few passes as they fit."""
        with self._changed:
            self._held += 1
        try:
            yield
        finally:
            with self._changed:
                self._held -= 1
                self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                # An idle worker ends; the next submit starts another (no thread lingers in tests or forks).
                if not self._changed.wait_for(lambda: self._pending and not self._held, timeout=60.0):
                    if not self._pending:
                        self._worker = None
                        return
                    continue
                rate = self._pending[0].rate
                batch = [i for i in self._pending if i.rate == rate][: self.max_batch]
                self._pending = [i for i in self._pending if i not in batch]
                self.batches.append(len(batch))
            self._score(batch, rate)

    def _score(self, batch: list[_Item], rate: int) -> None:
        try:
            scores = self.scorer.score_batch(
                [i.audio for i in batch], [i.text for i in batch], [i.language for i in batch], rate=rate
            )
        except BaseException as exc:  # every waiting chunk gets the failure, the worker carries on
            for item in batch:
                item.future.set_exception(exc)
            return
        for item, s in zip(batch, scores, strict=True):
            item.future.set_result(s)


def with_reference(scores: Scores, reference: np.ndarray | None) -> Scores:
    """`scores` with its similarity to `reference` (unchanged without a reference or an embedding)."""
    if reference is None or scores.embedding is None:
        return scores
    return replace(scores, similarity=similarity(scores.embedding, reference))
