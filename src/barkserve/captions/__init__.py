"""Captions of synthesized speech: sentence cues timed from the audio, word times on request, SRT/WebVTT/JSON.

Example:
    result = synth.synthesize(text)
    cues, warnings = captions_for(result)  # sentence level
    write_captions(cues, Path("speech.srt"), "srt")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from barkserve.captions.align import Aligner, CtcAligner, align_words, aligner_for, forced_align, load_aligner
from barkserve.captions.cues import Cue, Word, chunk_spans, sentence_cues, shift
from barkserve.captions.formats import (
    CAPTION_FORMATS,
    MIMETYPES,
    check_format,
    from_json,
    render,
    to_json,
    to_srt,
    to_vtt,
    write_captions,
)
from barkserve.errors import AlignmentError
from barkserve.text import Chunk
from barkserve.voices import language_of

__all__ = [
    "CAPTION_FORMATS",
    "MIMETYPES",
    "Aligner",
    "AlignmentError",
    "CtcAligner",
    "Cue",
    "Speech",
    "Spoken",
    "Word",
    "align_words",
    "aligner_for",
    "captions_for",
    "check_format",
    "chunk_spans",
    "forced_align",
    "from_json",
    "load_aligner",
    "render",
    "sentence_cues",
    "shift",
    "sidecar_path",
    "timed_words",
    "to_json",
    "to_srt",
    "to_vtt",
    "write_captions",
]


log = logging.getLogger(__name__)


class Spoken(Protocol):
    """What `captions_for` reads of a synthesis: a `SynthesisResult`, or a `Speech`."""

    @property
    def audio(self) -> np.ndarray: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def voice(self) -> str: ...
    @property
    def chunks(self) -> tuple[Chunk, ...]: ...
    @property
    def chunk_spans(self) -> tuple[tuple[float, float], ...]: ...


def captions_for(result: Spoken, aligner: Aligner | None = None) -> tuple[list[Cue], list[str]]:
    """The captions of a synthesis: sentence cues, with word times when an `aligner` is given.

    Returns:
        The cues and the warnings of word alignment (empty at sentence level).
    """
    cues = sentence_cues(
        result.text,
        result.chunks,
        result.chunk_spans,
        language=language_of(result.voice),
        audio=result.audio,
        sample_rate=result.sample_rate,
    )
    breaks = [start for start, _ in result.chunk_spans]
    return timed_words(result.audio, result.sample_rate, cues, aligner, breaks=breaks)


def timed_words(
    audio: np.ndarray,
    sample_rate: int,
    cues: list[Cue],
    aligner: Aligner | None,
    where: str = "",
    breaks: Sequence[float] = (),
) -> tuple[list[Cue], list[str]]:
    """`cues` with word times from `aligner` (None: as they are), and the warnings of what kept sentence
    timing, each starting with `where`.

    The one policy of every caption path (/synthesize, streams, `say`, jobs): word timing never fails
    the speech it times. A window the aligner cannot place, or an aligner that breaks, keeps sentence
    timing, and a warning says so.
    """
    if aligner is None or not cues:
        return cues, []
    try:
        aligned, warnings = align_words(audio, sample_rate, cues, aligner, breaks)
    except Exception as exc:  # the aligner's model or its input broke: the captions are still good at sentence level
        log.exception("word timing failed")
        return cues, [f"{where}word timing failed ({type(exc).__name__}: {exc}); the captions keep sentence timing"]
    return aligned, [where + w for w in warnings]


@dataclass(frozen=True, eq=False)
class Speech:
    """Audio and the text it speaks, chunk by chunk: what a stream has once its pieces are all made."""

    audio: np.ndarray  # (samples,) float32 mono
    sample_rate: int
    text: str  # the caller's text
    voice: str  # its name (a preset's name gives the language for sentence splitting)
    chunks: tuple[Chunk, ...]
    chunk_spans: tuple[tuple[float, float], ...]


def sidecar_path(audio_path: Path, fmt: str) -> Path:
    """The captions file beside an audio file: `speech.mp3` -> `speech.srt`."""
    return Path(audio_path).with_suffix(f".{check_format(fmt)}")
