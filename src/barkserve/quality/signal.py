"""Checks of a clip that need no model: duration against the text, silences, clipping, loudness, speed,
and whether it sounds like a voice at all (spectral flatness, voiced share).

Silence is measured on 10 ms frames: a frame is silent when its RMS level is more than
`SILENCE_RANGE_DB` below the loudest frame of the clip, or below `SILENCE_FLOOR_DBFS` outright.
A threshold relative to the clip keeps the measure independent of its gain; the floor keeps a
clip of faint noise from counting as speech. Levels are dBFS with a full-scale square wave at
0 dB (a full-scale sine is -3 dBFS).

Is it speech? Two measures on 40 ms windows every 10 ms of the sound (the frames above the silence
threshold), both independent of the sample rate (only 0-8 kHz is looked at):

- spectral flatness: the geometric over the arithmetic mean of the power spectrum, the median over
  the windows. Speech has formants and harmonics (about 0.01-0.1); white noise, hiss and static
  are flat (about 0.5 and more).
- voiced share: the share of windows with a pitch, i.e. whose normalized cross-correlation with
  itself shifted by one period (60-400 Hz, as pitch trackers such as YIN and RAPT search) reaches
  `VOICED_CORRELATION`. Speech is voiced in about half its sound and more; noise, clicks and
  crackle have no period.

`signal_problems` turns the measures into the cheap gate of quality control (`qc.signal`): silence,
clipping, a flat spectrum, too little voicing. Its thresholds (`SignalGate`'s defaults) were measured
by benchmarks/calibrate_qc.py; see docs/evaluation.md.
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
# Speech-or-not windows: 40 ms (two periods of 50 Hz) every 10 ms; pitch searched in 60-400 Hz.
VOICING_WINDOW_SEC = 0.040
F0_MIN_HZ, F0_MAX_HZ = 60.0, 400.0
# A window is voiced when its normalized cross-correlation at some period reaches this.
VOICED_CORRELATION = 0.6
# Spectral flatness looks at 0-8 kHz only, so 16 kHz and 24 kHz audio measure alike.
FLATNESS_MAX_HZ = 8_000.0


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
    # Median spectral flatness (0-1) of the sound's windows: near 0 for speech, about 0.5+ for noise.
    spectral_flatness: float = 0.0
    # Share (0-1) of the sound's windows that have a pitch; 0 when there is no sound.
    voiced_share: float = 0.0

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
    flatness, voiced = _speech_measures(x, rate, silence_range_db, silence_floor_dbfs)
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
        spectral_flatness=flatness,
        voiced_share=voiced,
    )


@dataclass(frozen=True)
class SignalGate:
    """Quality control's cheap gate: what makes a clip silence, clipped or not speech.

    The defaults are the thresholds chosen by benchmarks/calibrate_qc.py on espeak-ng speech in six
    languages and its damaged copies (benchmarks/results/cpu-2core-qc-calibration.json); a test checks
    that they match that file.
    """

    # Silence: the whole clip quieter than this RMS level (or no frame loud enough to be sound).
    min_rms_dbfs: float = -47.0
    # Clipped: more than this share of the samples at full scale.
    max_clipping: float = 0.005
    # Not speech: a spectrum flatter than this (noise, hiss, static)...
    max_flatness: float = 0.18
    # ... or fewer voiced windows than this share of the sound (noise, clicks, no voice).
    min_voiced_share: float = 0.4


def signal_problems(m: SignalMeasures, gate: SignalGate | None = None) -> list[str]:
    """What is wrong with a clip by `gate` (the calibrated defaults if None), in words; empty when nothing."""
    g = gate or SignalGate()
    if m.silent or m.rms_dbfs < g.min_rms_dbfs:
        return [f"silence: level {m.rms_dbfs:.1f} dBFS < {g.min_rms_dbfs}"]
    out = []
    if m.clipping_fraction > g.max_clipping:
        out.append(f"clipped: {m.clipping_fraction:.1%} of samples at full scale > {g.max_clipping:.1%}")
    if m.spectral_flatness > g.max_flatness:
        out.append(f"not speech: spectral flatness {m.spectral_flatness:.3f} > {g.max_flatness}")
    if m.voiced_share < g.min_voiced_share:
        out.append(f"not speech: voiced share {m.voiced_share:.2f} < {g.min_voiced_share}")
    return out


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


def _speech_measures(x: np.ndarray, rate: int, range_db: float, floor_dbfs: float) -> tuple[float, float]:
    """(median spectral flatness, voiced share) of the windows that are sound, not silence."""
    hop = max(1, round(FRAME_SEC * rate))
    size = max(2, round(VOICING_WINDOW_SEC * rate))
    n = 0 if len(x) < size else 1 + (len(x) - size) // hop
    if n == 0:
        return 0.0, 0.0
    index = np.arange(size)[None, :] + hop * np.arange(n)[:, None]  # [n, size]
    frames = x[index]
    frames = frames - frames.mean(axis=1, keepdims=True)
    level = 20.0 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)  # [n] dBFS
    loud = level >= max(floor_dbfs, float(level.max()) - range_db)
    frames = frames[loud]
    if len(frames) == 0:
        return 0.0, 0.0
    # Spectral flatness of the Hann-windowed power spectrum up to FLATNESS_MAX_HZ.
    power = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2  # [loud, bins]
    bins = max(2, int(FLATNESS_MAX_HZ / (rate / size)))
    power = power[:, 1 : bins + 1] + 1e-12
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)  # [loud]
    # Normalized cross-correlation of each window with itself shifted by each candidate period.
    lo, hi = max(1, int(rate / F0_MAX_HZ)), min(size - 2, int(np.ceil(rate / F0_MIN_HZ)))
    spectrum = np.fft.rfft(frames, n=2 * size, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, lo : hi + 1]  # [loud, lags]
    energy = np.cumsum(frames**2, axis=1)  # [loud, size]
    total = energy[:, -1:]
    lags = np.arange(lo, hi + 1)
    head = energy[:, size - 1 - lags]  # energy of x[:size - k]
    tail = total - energy[:, lags - 1]  # energy of x[k:]
    nccf = corr / np.sqrt(head * tail + 1e-20)
    voiced = nccf.max(axis=1) >= VOICED_CORRELATION
    return float(np.median(flatness)), float(np.mean(voiced))
