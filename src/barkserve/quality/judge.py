"""Quality control's judge over the real scorers: one chunk in, its speech error, voice similarity and MOS out.

Chunks go through the scorer's `ScoringQueue`: chunks judged at the same time (by concurrent requests,
or handed over early with `prefetch` by the synthesizer when several of a request's chunks are made at
once) share one forward pass of each model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from barkserve.qc import ChunkScore
from barkserve.quality.batching import with_reference
from barkserve.quality.scorer import Scorer, Scores
from barkserve.quality.signal import signal_problems
from barkserve.text import guess_language

# Chunks scored early and not yet asked for, at most (the oldest are forgotten).
MAX_EARLY = 64


class ScorerJudge:
    """Scores generated chunks with a `Scorer` (Whisper for the words, a speaker model for the voice, a MOS
    predictor for naturalness, the signal gate), batched through its queue."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        # Chunks handed over early, by the identity of their audio array (kept alive here with it).
        self._early: dict[int, tuple[np.ndarray, Future[Scores]]] = {}
        self._lock = threading.Lock()

    def prefetch(self, chunks: Sequence[tuple[np.ndarray, int, str, str | None]]) -> None:
        """Queue chunks (audio, sample rate, text, language) for scoring now, in one hand-over so that
        they share forward passes; a later `score` of the same array takes its result."""
        futures = self.scorer.queue.submit_many(
            [(audio, rate, text, language or guess_language(text)) for audio, rate, text, language in chunks]
        )
        with self._lock:
            for (audio, *_), future in zip(chunks, futures, strict=True):
                self._early[id(audio)] = (audio, future)
            while len(self._early) > MAX_EARLY:  # chunks of a stopped request are never asked for
                self._early.pop(next(iter(self._early)))

    def score(
        self, audio: np.ndarray, sample_rate: int, text: str, language: str | None, reference: np.ndarray | None
    ) -> ChunkScore:
        """Speech error of `audio` against `text`, its cosine to `reference` when one is given, its MOS."""
        with self._lock:
            early = self._early.pop(id(audio), None)
        if early is not None and early[0] is audio:
            scores = early[1].result()
        else:
            lang = language or guess_language(text)
            scores = self.scorer.queue.score(audio, sample_rate, text, lang)
        scores = with_reference(scores, reference)
        nat = scores.naturalness
        return ChunkScore(
            error=scores.error,
            similarity=scores.similarity,
            embedding=scores.embedding,
            transcript=scores.transcript,
            mos=scores.mos,
            not_scored=None if nat is None else nat.not_scored,
            signal_problems=tuple(signal_problems(scores.signal)),
        )
