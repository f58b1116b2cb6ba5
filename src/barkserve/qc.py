"""Quality control of each chunk: score it as it is made, regenerate it with the next seed if it fails.

Bark sometimes skips or invents words, drifts into another voice, or makes static and hiss instead
of speech. With a `QualityCheck`, each chunk is judged (speech error against its text, voice
similarity to the first accepted chunk, naturalness from a MOS predictor); a chunk that fails is
generated again with seed + 1, seed + 2, ... up to `tries` generations in all, and the best one is
kept. Everything is recorded, so a result says what was tried and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from barkserve.errors import InvalidRequest

MAX_TRIES = 10
# The thresholds benchmarks/calibrate_qc.py chose on espeak-ng speech in seven languages
# (benchmarks/results/cpu-2core-qc-calibration.json; a test keeps them equal): the highest that flag at
# most 5% of clean speech. min_mos and min_similarity stay off unless a request sets them; these are
# the values to set (the signal gate's own are quality.signal.SignalGate's defaults).
CALIBRATED_MIN_MOS = {"dnsmos": 1.8, "distillmos": 1.65}
CALIBRATED_MIN_SIMILARITY = {"resemblyzer": 0.85}
QC_FIELDS = ("max_error", "min_similarity", "min_mos", "signal", "tries")


@dataclass(frozen=True)
class QualityCheck:
    """When a chunk is good enough. Off unless a request asks for it (`qc` option)."""

    # Highest speech error accepted: word error rate, or character error rate for Chinese,
    # Japanese and Korean, of the recognized speech against the chunk's text. None: not checked.
    max_error: float | None = 0.3
    # Lowest cosine similarity of the chunk's speaker embedding to the first accepted chunk's (the
    # voice must not drift between chunks). None: not checked.
    min_similarity: float | None = None
    # Lowest naturalness score (1-5) of the server's MOS predictor (mos_model): noise, static or hiss
    # instead of speech scores low. None: not checked. Calibrated defaults: docs/evaluation.md.
    min_mos: float | None = None
    # The cheap signal gate, no model: a chunk that is silence, clipped, or not speech (a flat spectrum,
    # too little voicing: noise, hiss, static) fails. Thresholds: quality.signal.SignalGate, calibrated.
    signal: bool = False
    # Generations per chunk at most, the first included.
    tries: int = 3

    def __post_init__(self) -> None:
        if self.max_error is not None and (not _is_number(self.max_error) or not 0 <= self.max_error <= 10):
            raise InvalidRequest(f"qc.max_error must be a number from 0 to 10 (or null); got {self.max_error!r}")
        if self.min_similarity is not None and (
            not _is_number(self.min_similarity) or not -1 <= self.min_similarity <= 1
        ):
            raise InvalidRequest(
                f"qc.min_similarity must be a number from -1 to 1 (or null); got {self.min_similarity!r}"
            )
        if self.min_mos is not None and (not _is_number(self.min_mos) or not 1 <= self.min_mos <= 5):
            raise InvalidRequest(f"qc.min_mos must be a number from 1 to 5 (or null); got {self.min_mos!r}")
        if not isinstance(self.signal, bool):
            raise InvalidRequest(f"qc.signal must be true or false; got {self.signal!r}")
        if not isinstance(self.tries, int) or isinstance(self.tries, bool) or not 1 <= self.tries <= MAX_TRIES:
            raise InvalidRequest(f"qc.tries must be an integer from 1 to {MAX_TRIES}; got {self.tries!r}")

    @classmethod
    def from_value(cls, value: object) -> QualityCheck | None:
        """`qc` as a request gives it: null/false (off), true (defaults) or an object of these fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, QualityCheck):
            return value
        if not isinstance(value, Mapping):
            raise InvalidRequest(
                'qc must be true, false or an object like {"max_error": 0.3, "min_similarity": 0.6, "tries": 3}'
            )
        unknown = sorted(set(value) - set(QC_FIELDS))
        if unknown:
            raise InvalidRequest(f"unknown qc field(s) {unknown}; qc takes {', '.join(QC_FIELDS)}")
        return cls(**dict(value))


@dataclass(frozen=True, eq=False)
class ChunkScore:
    """How one generation of a chunk scored."""

    error: float | None = None  # speech error (WER, or CER for CJK)
    similarity: float | None = None  # cosine to the reference voice embedding
    embedding: np.ndarray | None = field(default=None, repr=False)  # (D,) L2-normalized, for later chunks
    transcript: str | None = None
    mos: float | None = None  # naturalness, 1-5, from the MOS predictor
    not_scored: str | None = None  # why a measure asked for has no value (a clip too short for it)
    # What the signal gate found wrong (silence, clipping, not speech), in words; empty when nothing.
    signal_problems: tuple[str, ...] = ()

    def failures(self, check: QualityCheck) -> list[str]:
        """What fails `check`, in words; empty when the chunk is accepted."""
        out = []
        if check.max_error is not None and self.error is not None and self.error > check.max_error:
            out.append(f"speech error {self.error:.3f} > {check.max_error}")
        if check.min_similarity is not None and self.similarity is not None and self.similarity < check.min_similarity:
            out.append(f"voice similarity {self.similarity:.3f} < {check.min_similarity}")
        if check.min_mos is not None and self.mos is not None and self.mos < check.min_mos:
            out.append(f"naturalness (MOS) {self.mos:.2f} < {check.min_mos}")
        if check.signal:
            out += self.signal_problems
        return out

    def badness(self, check: QualityCheck) -> float:
        """How far past the thresholds (0 when it passes): the best of several tries has the least."""
        over = 0.0
        if check.max_error is not None and self.error is not None:
            over += max(0.0, self.error - check.max_error)
        if check.min_similarity is not None and self.similarity is not None:
            over += max(0.0, check.min_similarity - self.similarity)
        if check.min_mos is not None and self.mos is not None:
            over += max(0.0, check.min_mos - self.mos) / 4  # the 1-5 scale, brought to about 0-1
        if check.signal:
            over += len(self.signal_problems)  # silence or noise is worse than a few wrong words
        return over

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": None if self.error is None else round(self.error, 4),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "transcript": self.transcript,
            "mos": None if self.mos is None else round(self.mos, 3),
            "not_scored": self.not_scored,
            "signal_problems": list(self.signal_problems),
        }


class Judge(Protocol):
    """Scores a generated chunk; `reference` is the embedding of the first accepted chunk, if any."""

    def score(
        self, audio: np.ndarray, sample_rate: int, text: str, language: str | None, reference: np.ndarray | None
    ) -> ChunkScore: ...


@dataclass(frozen=True)
class Attempt:
    """One generation of a chunk: its seed and how it scored."""

    seed: int
    score: ChunkScore
    failures: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **self.score.to_dict(), "passed": not self.failures, "failures": list(self.failures)}


@dataclass(frozen=True)
class ChunkReport:
    """What quality control did for one chunk: every attempt, and which one was kept."""

    index: int
    attempts: tuple[Attempt, ...]
    kept: int  # index into attempts

    @property
    def passed(self) -> bool:
        return not self.attempts[self.kept].failures

    @property
    def score(self) -> ChunkScore:
        return self.attempts[self.kept].score

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tries": len(self.attempts),
            "kept": self.kept,
            "seed": self.attempts[self.kept].seed,
            "passed": self.passed,
            "attempts": [a.to_dict() for a in self.attempts],
        }


def best_of(
    generate: Callable[[int], Any],
    audio_of: Callable[[Any], np.ndarray],
    seed: int,
    judge: Callable[[np.ndarray], ChunkScore],
    check: QualityCheck,
    index: int = 0,
    first: Any = None,
) -> tuple[Any, ChunkReport]:
    """Generate (or take `first`, made with `seed`), judge, and retry with seed + 1, ... while it fails.

    Returns the kept output (the first that passes, else the least bad) and the record of attempts.
    """
    outputs, attempts = [], []
    for k in range(check.tries):
        out = first if k == 0 and first is not None else generate(seed + k)
        score = judge(audio_of(out))
        outputs.append(out)
        attempts.append(Attempt(seed + k, score, tuple(score.failures(check))))
        if not attempts[-1].failures:
            break
    kept = min(range(len(attempts)), key=lambda i: (attempts[i].score.badness(check), i))
    return outputs[kept], ChunkReport(index, tuple(attempts), kept)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
