"""Sentence captions timed from the synthesized audio: one cue per sentence, in the original text.

Where each chunk starts and ends in the audio is exact (the synthesizer measures it). Within a chunk
of several sentences, the boundaries are first placed in proportion to each sentence's expected
speaking time (`text.estimate_seconds`), then moved to the nearest pause found in the chunk's audio
(see `timing.snap_to_pauses`); without audio, or where no pause is near, the proportional estimate
stays. A caption stays up until the next one starts, through the pause after it: the cues are
contiguous and, with the synthesizer's spans, cover the audio from 0 to its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate, pairwise

import numpy as np

from barkserve.captions.source import caption_text, normalized_offsets
from barkserve.captions.timing import snap_to_pauses
from barkserve.errors import InvalidRequest
from barkserve.text import Chunk, estimate_seconds, split_sentences

# The shortest time a sentence's weight stands for, so that a sentence of only a cue still gets time.
MIN_SECONDS = 0.05


@dataclass(frozen=True)
class Word:
    """One word of a caption: the original word (with its punctuation) and its time, in seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Cue:
    """One caption: a sentence (or the part of a long sentence in one chunk) and its time, in seconds.

    `words` are the cue's words (its text split at white space) with their times, when they were aligned.
    """

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


def sentence_cues(
    original: str,
    chunks: Sequence[Chunk],
    chunk_spans: Sequence[tuple[float, float]],
    language: str | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> list[Cue]:
    """One cue per sentence of `original`, timed by the chunks' places in the audio.

    Args:
        original: The caller's text, before `normalize_text`.
        chunks: `chunk_text(normalize_text(original))`, in order (they cover the normalized text).
        chunk_spans: Each chunk's (start, end) in seconds in the final audio: its speech after tempo
            and fades, without the pause that follows it (`SynthesisResult.chunk_spans`).
        language: The text's language for sentence splitting (None: guessed, as chunking does).
        audio: The final audio (float mono); with it, sentence boundaries within a chunk move to its
            pauses. Without it they stay proportional to the sentences' expected speaking time.
        sample_rate: The rate of `audio`.

    Returns:
        Contiguous cues (each ends where the next starts; the first starts at the first chunk's start,
        the last ends at the last chunk's end) whose texts, joined with spaces, are `original` without
        Bark's cues and with white space folded. Empty when nothing in the text is caption text.

    Raises:
        InvalidRequest: when the chunks or spans do not belong together.
    """
    if len(chunks) != len(chunk_spans):
        raise InvalidRequest(
            f"sentence_cues got {len(chunks)} chunks but {len(chunk_spans)} spans; give one span per chunk"
        )
    _check_spans(chunk_spans)
    sentences = plan_sentences(original, chunks, language)
    if audio is not None and not sample_rate:
        raise InvalidRequest("sentence_cues needs the sample_rate of the audio it is given")
    found = [item for i, span in enumerate(chunk_spans) for item in chunk_cues(sentences, i, span, audio, sample_rate)]
    return contiguous(found, chunk_spans[0][0] if chunk_spans else 0.0, chunk_spans[-1][1] if chunk_spans else 0.0)


@dataclass(frozen=True)
class Sentences:
    """What the text alone says of its cues: per chunk, its sentences (slices of the normalized text)
    and the caption text each stands for in the original ('' for a piece of only Bark cues)."""

    normalized: str
    by_chunk: list[list[tuple[int, int]]]
    texts: list[list[str]]

    def captioned(self, index: int) -> bool:
        """Whether chunk `index` has any caption text (a chunk of only `[laughs]` has none)."""
        return any(self.texts[index])


def plan_sentences(original: str, chunks: Sequence[Chunk], language: str | None = None) -> Sentences:
    """The sentences of each chunk and their caption texts, before any audio exists."""
    normalized, offsets = normalized_offsets(original)
    if "".join(c.text for c in chunks) != normalized or any(normalized[c.start : c.end] != c.text for c in chunks):
        raise InvalidRequest("the chunks are not chunk_text(normalize_text(original)); cut the same text")
    by_chunk = _pieces(chunks, language)
    # Cut points in the original: a piece owns the original text from its first character up to the
    # next piece's first character, so white space and invisible characters between them are kept.
    starts = [a for own in by_chunk for a, _ in own]
    cuts = [0, *(offsets[a] for a in starts[1:]), len(original)]
    flat = iter(caption_text(original[a:b]) for a, b in pairwise(cuts))
    return Sentences(normalized, by_chunk, [[next(flat) for _ in own] for own in by_chunk])


def chunk_cues(
    sentences: Sentences,
    index: int,
    span: tuple[float, float],
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> list[tuple[tuple[float, float], str]]:
    """The (time, text) of each captioned sentence of chunk `index`, which lies at `span` in the audio.

    Only this chunk's span of `audio` is read, so a stream can time each chunk as it arrives.
    """
    normalized, own, (start, end) = sentences.normalized, sentences.by_chunk[index], span
    weights = [max(estimate_seconds(normalized[a:b].strip()), MIN_SECONDS) for a, b in own]
    bounds = _proportional(start, end, weights)
    if audio is not None and sample_rate and len(own) > 1:
        segment = audio[round(start * sample_rate) : round(end * sample_rate)]
        inner = snap_to_pauses(segment, sample_rate, [b - start for b in bounds[1:-1]])
        bounds = [start, *(start + b for b in inner), end]
    return [(t, text) for t, text in zip(pairwise(bounds), sentences.texts[index], strict=True) if text]


def _check_spans(spans: Sequence[tuple[float, float]]) -> None:
    for a, b in spans:
        if not 0 <= a <= b:
            raise InvalidRequest(f"chunk spans must be 0 <= start <= end; got ({a}, {b})")
    if any(b1 > a2 + 1e-9 for (_, b1), (a2, _) in pairwise(spans)):
        raise InvalidRequest("chunk spans must be in order and must not overlap")


def _pieces(chunks: Sequence[Chunk], language: str | None) -> list[list[tuple[int, int]]]:
    """Per chunk, its sentences as (start, end) slices of the normalized text.

    Chunks start at a sentence (or, for a sentence longer than a chunk, where its chunks meet), so
    splitting each chunk alone gives the sentences of the whole text, and is much faster than
    splitting a book-sized text at once (pysbd's time grows faster than the text).
    """
    out = []
    for chunk in chunks:
        cuts = [chunk.start + n for n in accumulate(len(s) for s in split_sentences(chunk.text, language))]
        out.append(list(pairwise([chunk.start, *cuts[:-1], chunk.end])))
    return out


def _proportional(start: float, end: float, weights: Sequence[float]) -> list[float]:
    """`start`, the boundaries that share (start, end) in proportion to `weights`, and `end`."""
    total = sum(weights)
    inner = [start + (end - start) * w / total for w in accumulate(weights[:-1])] if total else []
    return [start, *inner, end]


def contiguous(found: Sequence[tuple[tuple[float, float], str]], first: float, last: float) -> list[Cue]:
    """Cues whose times touch: each lasts until the next starts, the first from `first`, the last to `last`."""
    if not found:
        return []
    starts = [first, *(t[0] for t, _ in found[1:])]
    ends = [*starts[1:], last]
    return [Cue(a, max(a, b), text) for a, b, (_, text) in zip(starts, ends, found, strict=True)]


def shift(cues: Sequence[Cue], seconds: float) -> list[Cue]:
    """The cues (and their words) `seconds` later: a chapter's cues placed at its offset in a book."""
    return [
        replace(
            c,
            start=c.start + seconds,
            end=c.end + seconds,
            words=tuple(replace(w, start=w.start + seconds, end=w.end + seconds) for w in c.words),
        )
        for c in cues
    ]


def chunk_spans(
    piece_samples: Sequence[int], pause_samples: Sequence[int], sample_rate: int
) -> list[tuple[float, float]]:
    """Each chunk's (start, end) in seconds from the lengths of the pieces joined into the audio.

    Args:
        piece_samples: Each delivered piece's length (its speech plus the pause after it), in order.
        pause_samples: The pause at the end of each piece (`SynthesisPlan.pause_samples`).
        sample_rate: Samples per second.
    """
    spans, at = [], 0
    for piece, pause in zip(piece_samples, pause_samples, strict=True):
        spans.append((at / sample_rate, (at + piece - pause) / sample_rate))
        at += piece
    return spans
