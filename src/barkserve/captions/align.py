"""Word times by CTC forced alignment of the generated audio against the caption text.

A CTC model (transformers' `Wav2Vec2ForCTC` with its processor) gives per-frame log-probabilities
over its characters; the Viterbi path through "blank, c1, blank, c2, ..., blank" (`forced_align`)
says at which frames each character is spoken. torchaudio's `forced_align` did the same but is gone
from torchaudio 2.9 on, so the dynamic program is here, in numpy.

The default aligner (setting `align_model`), `facebook/wav2vec2-base-960h`, knows English letters only: words of other
scripts have no characters in its vocabulary and keep sentence timing (with a warning). For other
languages set `align_model` to a character-level CTC checkpoint of that language.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.captions.cues import Cue, Word
from barkserve.config import ScorerSettings
from barkserve.errors import AlignerUnavailable, AlignmentError, InvalidRequest

# Cues are aligned in windows of about this much audio: wav2vec2's attention is quadratic in length.
WINDOW_SEC = 30.0


class Aligner(Protocol):
    """What `align_words` needs of a CTC model."""

    sample_rate: int  # the audio rate the model reads
    blank: int  # the CTC blank token's id
    separator: int | None  # the word delimiter's id, when the vocabulary has one

    def tokens(self, word: str) -> list[int]:
        """The ids of `word`'s characters the model knows (others are left out)."""
        ...

    def emissions(self, audio: np.ndarray) -> np.ndarray:
        """(frames, vocabulary) log-probabilities of float32 mono `audio` at `sample_rate`."""
        ...


def forced_align(log_probs: np.ndarray, targets: Sequence[int], blank: int) -> list[tuple[int, int]]:
    """The most likely CTC path of `targets` through `log_probs`: each target's frames [first, last + 1).

    Args:
        log_probs: (T, V) per-frame log-probabilities.
        targets: L token ids, none of them `blank`.
        blank: The blank token's id.

    Raises:
        AlignmentError: when there are no targets, or fewer frames than the path needs (one per
            target, plus a blank between two equal targets in a row).
    """
    frames = log_probs.shape[0]
    if not targets:
        raise AlignmentError("no characters to align")
    repeats = sum(a == b for a, b in pairwise(targets))
    if frames < len(targets) + repeats:
        raise AlignmentError(f"{frames} audio frames cannot hold {len(targets) + repeats} characters")
    # ext: [S] states, blank between and around the targets; state 2k+1 is target k.
    ext = np.full(2 * len(targets) + 1, blank, dtype=np.int64)
    ext[1::2] = targets
    states = len(ext)
    # A state may come from two back (skipping a blank) when it is a target unlike the one before.
    skip = np.zeros(states, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    alpha = np.full(states, -np.inf)
    alpha[:2] = log_probs[0, ext[:2]]
    back = np.zeros((frames, states), dtype=np.int8)  # 0: stayed, 1: from s-1, 2: from s-2
    for t in range(1, frames):
        one = np.concatenate([[-np.inf], alpha[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
        choices = np.stack([alpha, one, two])  # [3, S]
        back[t] = np.argmax(choices, axis=0)
        alpha = choices[back[t], np.arange(states)] + log_probs[t, ext]
    state = states - 1 if alpha[-1] >= alpha[-2] else states - 2
    if not np.isfinite(alpha[state]):
        raise AlignmentError("no path through the audio frames")
    path = np.empty(frames, dtype=np.int64)  # the state at each frame
    for t in range(frames - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    spans = []
    for k in range(len(targets)):
        hits = np.flatnonzero(path == 2 * k + 1)
        spans.append((int(hits[0]), int(hits[-1]) + 1))
    return spans


def align_words(
    audio: np.ndarray, sample_rate: int, cues: Sequence[Cue], aligner: Aligner, breaks: Sequence[float] = ()
) -> tuple[list[Cue], list[str]]:
    """The cues with word times from `aligner`, and warnings for cues that keep sentence timing.

    Cues are aligned in windows of up to WINDOW_SEC of audio; a window also ends before a cue that
    starts at or after one of `breaks` (the synthesizer's chunk starts), so each chunk's words are
    timed from that chunk's audio alone, the same whether a stream times it as it arrives or the
    finished file is timed at once. Within an aligned window each cue
    after the first starts where its first word starts, and each word of a cue is its text split at
    white space; words with no character the aligner knows share the time between their neighbours.
    A window that cannot be aligned (no known characters, too little audio) keeps its cues as they
    were, without words, and says so in a warning.
    """
    out: list[Cue] = []
    warnings: list[str] = []
    for window in _windows(cues, breaks):
        try:
            out.extend(_align_window(audio, sample_rate, window, aligner))
        except AlignmentError as exc:
            first, last = window[0], window[-1]
            warnings.append(
                f"word timing failed for the captions from {first.start:.2f} s to {last.end:.2f} s "
                f"({first.text[:40]!r}...): {exc}; they keep sentence timing"
            )
            out.extend(window)
    return out, warnings


def _windows(cues: Sequence[Cue], breaks: Sequence[float] = ()) -> list[list[Cue]]:
    windows: list[list[Cue]] = []
    for cue in cues:
        opened = windows[-1][0].start if windows else 0.0
        crosses = any(opened < b <= cue.start for b in breaks)
        if windows and not crosses and cue.end - opened <= WINDOW_SEC:
            windows[-1].append(cue)
        else:
            windows.append([cue])
    return windows


def _align_window(audio: np.ndarray, sample_rate: int, cues: list[Cue], aligner: Aligner) -> list[Cue]:
    start, end = cues[0].start, cues[-1].end
    clip = resample(audio[round(start * sample_rate) : round(end * sample_rate)], sample_rate, aligner.sample_rate)
    words = [(i, w) for i, c in enumerate(cues) for w in c.text.split()]
    targets: list[int] = []
    owner: list[int] = []  # the word of each target
    for n, (_, word) in enumerate(words):
        ids = aligner.tokens(word)
        if ids and targets and aligner.separator is not None:
            targets.append(aligner.separator)
            owner.append(-1)
        targets += ids
        owner += [n] * len(ids)
    if not targets:
        raise AlignmentError("the text has no character the aligner's vocabulary knows")
    if len(clip) < aligner.sample_rate // 10:
        raise AlignmentError(f"{len(clip) / aligner.sample_rate:.2f} s of audio is too short to align")
    log_probs = aligner.emissions(clip)
    frame_sec = (end - start) / max(1, log_probs.shape[0])
    spans = forced_align(log_probs, targets, aligner.blank)
    times: list[tuple[float, float] | None] = [None] * len(words)
    for n in range(len(words)):
        own = [s for s, o in zip(spans, owner, strict=True) if o == n]
        if own:
            times[n] = (start + own[0][0] * frame_sec, start + own[-1][1] * frame_sec)
    filled = _fill_gaps(times, start, end)
    return _with_words(cues, words, filled, end)


def _fill_gaps(times: list[tuple[float, float] | None], start: float, end: float) -> list[tuple[float, float]]:
    """Times for the words that have none: each run of them shares the gap between its neighbours."""
    out: list[tuple[float, float]] = []
    n = 0
    while n < len(times):
        known = times[n]
        if known is not None:
            out.append(known)
            n += 1
            continue
        run_end = n
        while run_end < len(times) and times[run_end] is None:
            run_end += 1
        left = out[-1][1] if out else start
        following = times[run_end] if run_end < len(times) else None
        right = following[0] if following is not None else end
        step = max(0.0, right - left) / (run_end - n)
        out += [(left + k * step, left + (k + 1) * step) for k in range(run_end - n)]
        n = run_end
    return out


def _with_words(
    cues: list[Cue], words: list[tuple[int, str]], times: list[tuple[float, float]], end: float
) -> list[Cue]:
    """The window's cues with their words; each cue after the first starts at its first word."""
    starts = [cues[0].start]
    for i in range(1, len(cues)):
        first = next((t for (c, _), t in zip(words, times, strict=True) if c == i), None)
        starts.append(max(starts[-1], first[0] if first is not None else cues[i].start))
    ends = [*starts[1:], end]
    out = []
    for i, cue in enumerate(cues):
        a, b = starts[i], ends[i]
        own = [
            Word(min(max(t0, a), b), min(max(t1, a), b), w)
            for (c, w), (t0, t1) in zip(words, times, strict=True)
            if c == i
        ]
        out.append(replace(cue, start=a, end=b, words=tuple(own)))
    return out


@dataclass(eq=False)
class CtcAligner:
    """A transformers CTC model (`Wav2Vec2ForCTC` or alike) and its processor, as an `Aligner`."""

    model: Any
    processor: Any
    device: str = "cpu"

    def __post_init__(self) -> None:
        tokenizer = self.processor.tokenizer
        self.vocab: dict[str, int] = dict(tokenizer.get_vocab())
        self.blank = int(tokenizer.pad_token_id)
        delimiter = getattr(tokenizer, "word_delimiter_token", None)
        self.separator = self.vocab.get(delimiter) if delimiter else None
        self._delimiter = delimiter
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, source: str, device: str = "cpu", offline: bool = False) -> CtcAligner:
        """Load a CTC checkpoint (hub id or folder) with `from_pretrained`.

        Raises:
            AlignerUnavailable: when it cannot be found or loaded.
        """
        from transformers import AutoModelForCTC, AutoProcessor

        if not Path(source).is_dir() and source.count("/") != 1:
            raise _unavailable(source, "it is neither a local folder nor a hub id like 'owner/name'")
        try:
            processor = AutoProcessor.from_pretrained(source, local_files_only=offline)
            model = AutoModelForCTC.from_pretrained(source, local_files_only=offline).to(device).eval()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _unavailable(source, first) from exc
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "feature_extractor"):
            raise _unavailable(source, "its processor has no CTC tokenizer and feature extractor")
        return cls(model, processor, device)

    def tokens(self, word: str) -> list[int]:
        ids = []
        for c in word:
            if c == self._delimiter or c.isspace():
                continue
            plain = "".join(x for x in unicodedata.normalize("NFKD", c) if not unicodedata.combining(x))
            for form in (c, c.upper(), c.lower(), plain, plain.upper(), plain.lower()):
                if len(form) == 1 and form in self.vocab and self.vocab[form] != self.blank:
                    ids.append(self.vocab[form])
                    break
        return ids

    def emissions(self, audio: np.ndarray) -> np.ndarray:
        import torch

        features = self.processor.feature_extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        with self._lock, torch.inference_mode():
            logits = self.model(features.input_values.to(self.device)).logits  # [1, T, V]
            return torch.log_softmax(logits[0].float(), dim=-1).cpu().numpy()


_LOADED: dict[tuple[str, str, bool], CtcAligner] = {}
_LOADING = threading.Lock()


def load_aligner(source: str, device: str = "cpu", offline: bool = False) -> CtcAligner:
    """The aligner of `source` on `device`, loaded once per process."""
    with _LOADING:
        key = (source, device, offline)
        if key not in _LOADED:
            _LOADED[key] = CtcAligner.from_pretrained(source, device, offline)
        return _LOADED[key]


def aligner_for(settings: ScorerSettings) -> CtcAligner:
    """The server's aligner (setting `align_model`) on its device, loaded once per process.

    Raises:
        InvalidRequest: when word captions are off (`align_model` is empty).
        AlignerUnavailable: when the checkpoint cannot be loaded.
    """
    from barkserve.models import pick_device

    if not settings.align_model:
        raise InvalidRequest(
            "word captions are off on this server (no align_model is set); ask for sentence captions only"
        )
    return load_aligner(settings.align_model, pick_device(settings.device), settings.offline)


def _unavailable(source: str, reason: str) -> AlignerUnavailable:
    return AlignerUnavailable(
        f"word-timing aligner {source!r} could not be loaded: {reason}. Ways out: connect to the internet once "
        f"so the Hugging Face cache holds it; pass a local folder of a CTC checkpoint saved with save_pretrained "
        f"(setting align_model); or ask for sentence captions only (no caption_words)"
    )
