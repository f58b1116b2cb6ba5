"""Quality control's judge over the real scorers: one chunk in, its speech error and voice similarity out."""

from __future__ import annotations

import numpy as np

from barkserve.qc import ChunkScore
from barkserve.quality.scorer import Scorer
from barkserve.text import guess_language


class ScorerJudge:
    """Scores generated chunks with a `Scorer` (Whisper for the words, an x-vector model for the voice)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    def score(
        self, audio: np.ndarray, sample_rate: int, text: str, language: str | None, reference: np.ndarray | None
    ) -> ChunkScore:
        """Speech error of `audio` against `text`, and its cosine to `reference` when one is given."""
        lang = language or guess_language(text)
        scores = self.scorer.score_batch([audio], [text], lang, reference_embedding=reference, rate=sample_rate)[0]
        return ChunkScore(
            error=scores.error, similarity=scores.similarity, embedding=scores.embedding, transcript=scores.transcript
        )
