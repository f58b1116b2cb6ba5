"""Captions of a stream, chunk by chunk as its audio is made: the same cues `captions_for` gives the
finished audio, each released with the chunk whose audio ends it.

A chunk's sentences are timed from that chunk's audio alone (`cues.chunk_cues`), and words are aligned
in windows that never cross a chunk's start (`align.align_words` with the chunk starts as breaks), so
timing a chunk when it arrives gives what timing the whole file gives. What a cue cannot know early is
its end: a caption lasts until the next one starts. The next captioned chunk starts where the pieces
before it end, so a chunk's cues are released with its own piece, unless the chunks after it hold only
Bark's cues (`[laughs]`): then they wait for the piece before the next captioned chunk (or the last).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from barkserve.captions import timed_words
from barkserve.captions.align import Aligner
from barkserve.captions.cues import Cue, chunk_cues, contiguous, plan_sentences
from barkserve.text import Chunk


class LiveCaptions:
    """Feed each piece of a synthesis (a chunk's audio, then its pause) to `add`; it returns the cues
    that piece completes, with words when an `aligner` is given.

    Args:
        text: The caller's original text.
        chunks: The synthesis's chunks (`SynthesisInfo.chunks`).
        language: The text's language for sentence splitting (None: guessed).
        sample_rate: The audio's rate.
        pauses: The pause (samples) that ends each chunk's piece (`SynthesisPlan.pause_samples`).
        aligner: The word aligner, or None for sentence timing.
    """

    def __init__(
        self,
        text: str,
        chunks: Sequence[Chunk],
        language: str | None,
        sample_rate: int,
        pauses: Sequence[int],
        aligner: Aligner | None = None,
    ) -> None:
        self.sentences = plan_sentences(text, chunks, language)
        self.sample_rate, self.pauses, self.aligner = sample_rate, list(pauses), aligner
        self.parts: list[np.ndarray] = []
        self.spans: list[tuple[float, float]] = []
        self.pending: list[tuple[tuple[float, float], str]] = []  # timed, not yet released
        self.cues: list[Cue] = []  # every cue released so far
        self.warnings: list[str] = []
        self._at = 0  # samples delivered so far

    @property
    def done(self) -> bool:
        return len(self.parts) == len(self.sentences.by_chunk)

    def add(self, piece: np.ndarray) -> list[Cue]:
        """Time the next chunk from its piece; the cues released now (their times on the stream's clock)."""
        index = len(self.parts)
        if index >= len(self.sentences.by_chunk):
            raise ValueError(f"the synthesis has {len(self.sentences.by_chunk)} chunks; got one more piece")
        rate = self.sample_rate
        span = (self._at / rate, (self._at + len(piece) - self.pauses[index]) / rate)
        self.parts.append(piece)
        self.spans.append(span)
        self._at += len(piece)
        audio = np.concatenate(self.parts)
        self.pending += chunk_cues(self.sentences, index, span, audio, rate)
        end = self._known_end()
        if end is None or not self.pending:
            return []
        first = self.spans[0][0] if not self.cues else self.pending[0][0][0]
        released = contiguous(self.pending, first, end)
        self.pending = []
        breaks = [start for start, _ in self.spans]
        timed, warnings = timed_words(audio, rate, released, self.aligner, breaks=breaks)
        self.cues += timed
        self.warnings += warnings
        return timed

    def _known_end(self) -> float | None:
        """Where the last pending cue ends: the start of the next captioned chunk once the pieces before
        it are all here, or the end of the audio after the last piece; None while unknown."""
        if self.done:
            return self.spans[-1][1]
        following = len(self.parts)
        if self.sentences.captioned(following):
            return self._at / self.sample_rate
        return None
