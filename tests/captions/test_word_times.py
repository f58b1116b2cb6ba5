"""Word times against times known in advance, through the real `CtcAligner` and `align_words`.

No trained CTC weights can be downloaded here, so the model is one whose output is known: it hears
tones. Each letter of the text is played as a tone whose pitch names the letter's id in the real
wav2vec2 character vocabulary (a tiny checkpoint's processor: tokenizer and feature extractor), the
gap between words as the word delimiter's tone, silence as nothing. The model reads each 20 ms frame
(wav2vec2's framing: 320 samples at 16 kHz) and answers its strongest pitch. Where each word was
played is therefore where it is spoken, and the aligner must find exactly that.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from barkserve.captions import CtcAligner, align_words
from barkserve.captions.cues import Cue
from barkserve.testing.tiny import make_tiny_ctc

RATE = 24_000  # Bark's rate: the aligner resamples to the model's 16 kHz itself
FRAME_SEC = 0.02
HOP = 320  # samples per frame at 16 kHz
BASE_BIN = 4  # token t is played at (BASE_BIN + t) x 50 Hz: a whole number of cycles per frame


class ToneCtc(torch.nn.Module):
    """A CTC "model" that names each 20 ms frame by its strongest pitch; silent frames are blank."""

    def __init__(self, vocab_size: int, blank: int) -> None:
        super().__init__()
        self.vocab_size, self.blank = vocab_size, blank

    def forward(self, input_values: torch.Tensor) -> Any:
        frames = input_values.shape[1] // HOP
        x = input_values[0, : frames * HOP].reshape(frames, HOP)  # [T, 320]
        spectrum = torch.fft.rfft(x, dim=1).abs()  # [T, 161], bin k is k x 50 Hz
        token = (spectrum.argmax(dim=1) - BASE_BIN).clamp(0, self.vocab_size - 1)  # [T]
        loud = x.pow(2).mean(dim=1) > 0.01 * x.pow(2).mean(dim=1).max()
        token = torch.where(loud, token, torch.full_like(token, self.blank))
        logits = torch.full((frames, self.vocab_size), -10.0)
        logits[torch.arange(frames), token] = 10.0
        return SimpleNamespace(logits=logits[None])  # [1, T, V]


@pytest.fixture(scope="module")
def aligner(tmp_path_factory: pytest.TempPathFactory) -> CtcAligner:
    from transformers import AutoProcessor

    folder = make_tiny_ctc(tmp_path_factory.mktemp("ctc"))
    processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    tokenizer = processor.tokenizer
    model = ToneCtc(len(tokenizer.get_vocab()), int(tokenizer.pad_token_id))
    return CtcAligner(model, processor)


def tone(token: int, frames: int) -> np.ndarray:
    t = np.arange(round(frames * FRAME_SEC * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (BASE_BIN + token) * 50 * t)).astype(np.float32)


def play(aligner: CtcAligner, words: list[tuple[str, int, int]], total_frames: int) -> np.ndarray:
    """Audio saying each (word, first frame, frames per letter); the delimiter's tone fills word gaps."""
    parts: list[np.ndarray] = []
    at = 0
    for n, (word, first, per_letter) in enumerate(words):
        gap = first - at
        parts.append(tone(aligner.separator or 0, gap) if n else np.zeros(round(gap * FRAME_SEC * RATE), np.float32))
        parts += [tone(token, per_letter) for token in aligner.tokens(word)]
        at = first + per_letter * len(aligner.tokens(word))
    parts.append(np.zeros(round((total_frames - at) * FRAME_SEC * RATE), np.float32))
    return np.concatenate(parts)


def test_the_tone_model_is_read_through_the_aligners_own_emissions(aligner: CtcAligner) -> None:
    audio = play(aligner, [("HI", 5, 3)], 20)
    from barkserve.quality.asr import resample

    emissions = aligner.emissions(resample(audio, RATE, aligner.sample_rate))  # [20, V] log-probabilities
    best = emissions.argmax(axis=1)
    h, i = aligner.tokens("HI")
    assert list(best) == [aligner.blank] * 5 + [h] * 3 + [i] * 3 + [aligner.blank] * 9
    assert np.allclose(np.exp(emissions).sum(axis=1), 1.0, atol=1e-5)


def test_words_are_timed_where_they_were_spoken(aligner: CtcAligner) -> None:
    # Two sentences over 4 s; sentence timing guessed the boundary at 2.5 s, the second starts at 2.2 s.
    said = [("The", 10, 4), ("cat's", 30, 3), ("home.", 60, 5), ("Café", 110, 2), ("opens", 140, 4), ("late!", 170, 6)]
    audio = play(aligner, said, 200)
    cues = [Cue(0.0, 2.5, "The cat's home."), Cue(2.5, 4.0, "Café opens late!")]
    aligned, warnings = align_words(audio, RATE, cues, aligner)
    assert warnings == []
    assert [(c.start, c.end) for c in aligned] == [(0.0, pytest.approx(2.2)), (pytest.approx(2.2), 4.0)]
    words = [w for c in aligned for w in c.words]
    assert [w.text for w in words] == [w for w, _, _ in said]  # the original text: case, accents, punctuation
    for word, (text, first, per_letter) in zip(words, said, strict=True):
        letters = len(aligner.tokens(text))  # "cat's" has its apostrophe, "Café" its E, "home." no dot
        assert word.start == pytest.approx(first * FRAME_SEC, abs=1e-6), text
        assert word.end == pytest.approx((first + letters * per_letter) * FRAME_SEC, abs=1e-6), text


def test_a_cue_that_does_not_start_at_zero_is_timed_in_the_whole_audio(aligner: CtcAligner) -> None:
    said = [("Bye", 40, 5), ("now", 80, 5)]
    audio = np.concatenate([np.zeros(RATE, np.float32), play(aligner, said, 100)])  # 1 s before the cue
    aligned, warnings = align_words(audio, RATE, [Cue(1.0, 3.0, "Bye now")], aligner)
    assert warnings == []
    (bye, now) = aligned[0].words
    assert (bye.start, bye.end) == (pytest.approx(1.8), pytest.approx(2.1))
    assert (now.start, now.end) == (pytest.approx(2.6), pytest.approx(2.9))
