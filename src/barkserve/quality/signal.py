"""Checks of a clip that need no model: duration against the text, silences, clipping, loudness, speed.

Silence is measured on 10 ms frames: a frame is silent when its RMS level is more than
`SILENCE_RANGE_DB` below the loudest frame of the clip, or below `SILENCE_FLOOR_DBFS` outright.
A threshold relative to the clip keeps the measure independent of its gain; the floor keeps a
clip of faint noise from counting as speech. Levels are dBFS with a full-scale square wave at
0 dB (a full-scale sine is -3 dBFS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from barkserve.text import estimate_seconds

FRAME_SEC = 0.010
SILENCE_RANGE_DB = 40.0
SILENCE_FLOOR_DBFS = -60.0
# |sample| at or above this counts as clipped (float audio in [-1, 1]; int16 full scale is 32767/32768).
CLIP_LEVEL = 0.999
# The level reported for digital silence, instead of minus infinity.
MIN_DBFS = -120.0


@dataclass(frozen=True)
class SignalMeasures:
    """What can be measured from a clip alone. Times in seconds, levels in dBFS."""

    duration_sec: float
    # Speaking time `text.estimate_seconds` expects for the clip's text; None without a text.
    expected_sec: float | None
    # duration_sec / expected_sec: far below 1 means words are missing, far above means babble.
    duration_ratio: float | None
    leading_silence_sec: float
    trailing_silence_sec: float
    # The longest silent stretch between the first and the last sound.
    longest_internal_silence_sec: float
    # Share of samples at or beyond CLIP_LEVEL.
    clipping_fraction: float
    rms_dbfs: float
    peak_dbfs: float

    @property
    def silent(self) -> bool:
        """True when no frame of the clip was loud enough to be sound."""
        return self.leading_silence_sec >= self.duration_sec


def measure_signal(
    audio: np.ndarray,
    rate: int,
    text: str | None = None,
    silence_range_db: float = SILENCE_RANGE_DB,
    silence_floor_dbfs: float = SILENCE_FLOOR_DBFS,
    clip_level: float = CLIP_LEVEL,
) -> SignalMeasures:
    """Measure one mono float clip.

    Args:
        audio: Samples in [-1, 1], shape (samples,).
        rate: Samples per second.
        text: The text the clip should say, for the expected duration; None to skip that check.
        silence_range_db: A frame this far below the loudest frame is silent.
        silence_floor_dbfs: A frame below this level is silent whatever the loudest frame.
        clip_level: |sample| at or above this counts as clipped.

    Returns:
        The clip's `SignalMeasures`.

    Raises:
        ValueError: `audio` is not one-dimensional or `rate` is not positive.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono, shape (samples,); got shape {x.shape}")
    if rate <= 0:
        raise ValueError(f"rate must be a positive number of samples per second; got {rate}")
    duration = len(x) / rate
    expected = estimate_seconds(text) if text else None
    lead, trail, internal = _silences(x, rate, silence_range_db, silence_floor_dbfs)
    return SignalMeasures(
        duration_sec=duration,
        expected_sec=expected,
        duration_ratio=duration / expected if expected else None,
        leading_silence_sec=lead,
        trailing_silence_sec=trail,
        longest_internal_silence_sec=internal,
        clipping_fraction=float(np.mean(np.abs(x) >= clip_level)) if len(x) else 0.0,
        rms_dbfs=to_dbfs(float(np.sqrt(np.mean(x**2)))) if len(x) else MIN_DBFS,
        peak_dbfs=to_dbfs(float(np.max(np.abs(x)))) if len(x) else MIN_DBFS,
    )


def to_dbfs(level: float) -> float:
    """20 log10(level), at least MIN_DBFS."""
    return max(MIN_DBFS, 20.0 * float(np.log10(max(level, 1e-12))))


def real_time_factor(compute_sec: float, audio_sec: float) -> float:
    """Seconds of compute per second of audio: below 1.0 is faster than real time.

    Raises:
        ValueError: `audio_sec` is not positive (no audio, no rate).
    """
    if audio_sec <= 0:
        raise ValueError(f"audio_sec must be positive to compute a real-time factor; got {audio_sec}")
    return compute_sec / audio_sec


def _silences(x: np.ndarray, rate: int, range_db: float, floor_dbfs: float) -> tuple[float, float, float]:
    """(leading, trailing, longest internal) silence in seconds, from 10 ms frame levels."""
    hop = max(1, round(FRAME_SEC * rate))
    n = len(x) // hop
    if n == 0:
        return len(x) / rate, len(x) / rate, 0.0
    frames = x[: n * hop].reshape(n, hop)  # [frames, hop]
    level = 20.0 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)  # [frames] dBFS
    threshold = max(floor_dbfs, float(level.max()) - range_db)
    loud = np.flatnonzero(level >= threshold)
    if len(loud) == 0:
        return len(x) / rate, len(x) / rate, 0.0
    frame_sec = hop / rate
    lead = loud[0] * frame_sec
    # The tail past the last whole frame belongs to the trailing silence when the last frame was silent.
    trail = len(x) / rate - (loud[-1] + 1) * frame_sec
    gaps = np.diff(loud) - 1  # silent frames between consecutive loud ones
    internal = float(gaps.max()) * frame_sec if len(gaps) else 0.0
    return float(lead), float(trail), internal
