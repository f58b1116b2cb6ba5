"""Signal steps on float32 mono audio: resampling, silence, click-free edges, tempo without a pitch change."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

# Fades at every chunk edge keep joins click-free without changing any length.
FADE_SEC = 0.01


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 `audio` at `target` Hz, band-limited (soxr, high quality) so that no model downstream
    (Whisper, the speaker encoder, the aligner, HuBERT, EnCodec) hears aliasing."""
    import soxr

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono, shape (samples,); got shape {x.shape}")
    return x if rate == target else np.asarray(soxr.resample(x, rate, target, quality="HQ"), dtype=np.float32)


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(round(seconds * sample_rate), dtype=np.float32)


def fade_edges(audio: np.ndarray, sample_rate: int, seconds: float = FADE_SEC) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of `seconds` at the two ends (a copy)."""
    n = min(round(seconds * sample_rate), len(audio) // 2)
    out = np.array(audio, dtype=np.float32, copy=True)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out


def change_tempo(audio: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """Play `speed` times faster (0.25-4.0) without changing pitch, with FFmpeg's atempo filter."""
    if speed == 1.0 or len(audio) == 0:
        return audio
    import av
    from av.filter import Graph

    factors = []
    while speed > 2.0:
        factors.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        factors.append(0.5)
        speed /= 0.5
    factors.append(speed)
    graph = Graph()
    nodes = [graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono")]
    nodes += [graph.add("atempo", str(f)) for f in factors] + [graph.add("abuffersink")]
    for a, b in pairwise(nodes):
        a.link_to(b)
    graph.configure()
    graph.push(to_frame(audio, sample_rate))
    graph.push(None)
    out = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (av.error.EOFError, av.error.BlockingIOError):
            break
    return np.concatenate(out).astype(np.float32) if out else audio[:0]


def to_frame(audio: np.ndarray, sample_rate: int) -> Any:
    import av

    samples = np.ascontiguousarray(audio, dtype=np.float32)[None]  # [1 channel, T]
    frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
    frame.sample_rate = sample_rate
    return frame
