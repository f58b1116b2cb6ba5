"""Quality control's judge over the real scorers: one chunk in, its speech error, voice similarity and MOS out."""

from __future__ import annotations

import numpy as np

from barkserve.qc import ChunkScore
from barkserve.quality.scorer import Scorer
from barkserve.quality.signal import signal_problems
from barkserve.text import guess_language


class ScorerJudge:
    """Scores generated chunks with a `Scorer` (Whisper for the words, a speaker model for the voice, a MOS
    predictor for naturalness)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def score(
        self, audio: np.ndarray, sample_rate: int, text: str, language: str | None, reference: np.ndarray | None
    ) -> ChunkScore:
        """Speech error of `audio` against `text`, its cosine to `reference` when one is given, its MOS."""
        lang = language or guess_language(text)
        scores = self.scorer.score_batch([audio], [text], lang, reference_embedding=reference, rate=sample_rate)[0]
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
