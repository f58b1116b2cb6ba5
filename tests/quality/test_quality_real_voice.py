"""Real speech, real speaker weights: espeak-ng voices scored with Resemblyzer's shipped encoder.

Two different sentences by the same voice must be more alike than the same sentence by a male and
a female voice; barkserve's `similarity`, `drift` and signal checks are what is measured.
"""

from __future__ import annotations

import numpy as np
import pytest
from real_voice import DVectorEncoder, espeak

from barkserve.quality import drift, measure_signal, similarity

FIRST = "The quick brown fox jumps over the lazy dog near the river bank."
SECOND = "Please call Stella and ask her to bring these things from the store."


@pytest.fixture(scope="module")
def embeddings() -> dict[tuple[str, str], np.ndarray]:
    encoder = DVectorEncoder()
    pairs = [(voice, text) for voice in ("en+m1", "en+f3") for text in (FIRST, SECOND)]
    return {(voice, text): encoder.embed(*espeak(text, voice)) for voice, text in pairs}


def test_same_voice_is_closer_than_same_words(embeddings: dict[tuple[str, str], np.ndarray]) -> None:
    for voice in ("en+m1", "en+f3"):
        same_voice = similarity(embeddings[voice, FIRST], embeddings[voice, SECOND])
        for text in (FIRST, SECOND):
            same_words = similarity(embeddings["en+m1", text], embeddings["en+f3", text])
            # Measured here: same voice 0.84-0.86, same words by the other voice 0.55-0.65.
            assert same_voice > same_words + 0.1, (voice, text, same_voice, same_words)


def test_drift_finds_the_chunk_in_another_voice(embeddings: dict[tuple[str, str], np.ndarray]) -> None:
    chunks = [embeddings["en+m1", FIRST], embeddings["en+m1", SECOND], embeddings["en+f3", SECOND]]
    d = drift(chunks)
    assert d.worst_chunk == 2
    assert d.similarities[0] > d.similarities[1] + 0.1


def test_signal_checks_on_real_speech() -> None:
    audio, rate = espeak(FIRST, "en+m1")
    m = measure_signal(audio, rate, FIRST)
    assert not m.silent and m.clipping_fraction < 0.001
    # espeak-ng speaks at ~175 words a minute, near the speaking rate `estimate_seconds` assumes.
    assert m.duration_ratio is not None and 0.6 < m.duration_ratio < 1.6
    # Word gaps are short; espeak-ng leaves little silence at either end.
    assert m.longest_internal_silence_sec < 0.5
    assert m.leading_silence_sec < 0.3 and m.trailing_silence_sec < 0.5
    padded = np.concatenate([np.zeros(rate // 2, dtype=np.float32), audio])
    assert measure_signal(padded, rate).leading_silence_sec == pytest.approx(m.leading_silence_sec + 0.5, abs=0.011)
