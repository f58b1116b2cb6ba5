"""Test recordings for the cloning tests (imported as `cloning_helpers`: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# The tiny HuBERT has 3 layers; its quantizers read the second.
TINY_LAYER = 2


def voice_like(seconds: float, rate: int, channels: int = 1, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A vowel-like test signal: a 140 Hz harmonic series, syllable-rate envelope, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    mono = level * (tone / 2.6) * envelope + 0.03 * level * rng.standard_normal(len(t))
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_audio(path: Path, seconds: float, rate: int = 22_050, channels: int = 2, **kwargs: Any) -> Path:
    import soundfile as sf

    sf.write(path, voice_like(seconds, rate, channels, **kwargs), rate)
    return path


def synthetic_pairs(
    n_utterances: int = 30, dim: int = 32, n_used: int = 64, noise: float = 1.0, seed: int = 0
) -> tuple[list[tuple[Any, Any]], np.ndarray]:
    """Utterances whose features are a fixed noisy function of the tokens: table[token] + noise.

    Returns the (features [T, D], tokens [T]) pairs and the token ids in use (64 of the 10,000).
    """
    import torch

    rng = np.random.default_rng(seed)
    vocab = rng.choice(10_000, n_used, replace=False)
    table = rng.standard_normal((10_000, dim)).astype(np.float32)
    pairs = []
    for _ in range(n_utterances):
        tokens = rng.choice(vocab, int(rng.integers(40, 80)))
        features = table[tokens] + noise * rng.standard_normal((len(tokens), dim)).astype(np.float32)
        pairs.append((torch.from_numpy(features), torch.from_numpy(tokens.astype(np.int64))))
    return pairs, vocab
