"""Pauses in speech, found from the audio's energy: where the sentences of one chunk meet."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HOP_SEC = 0.01
WINDOW_SEC = 0.02
# A frame this far below the chunk's loudest frame is silent.
SILENCE_DB = 35.0
# Shorter silences are gaps inside words (stops, breaths), not pauses between sentences.
MIN_PAUSE_SEC = 0.1


def pauses(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """The (start, end) seconds of each pause inside `audio`: a run of silent frames at least
    MIN_PAUSE_SEC long, not touching either end (leading and trailing silence are no pause)."""
    hop, window = max(1, round(HOP_SEC * sample_rate)), max(1, round(WINDOW_SEC * sample_rate))
    count = (len(audio) - window) // hop + 1
    if count < 3:
        return []
    # frames: [count, window]
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(audio, dtype=np.float32), window)[::hop][:count]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loudest = float(rms.max())
    if loudest <= 0.0:
        return []
    silent = rms < loudest * 10 ** (-SILENCE_DB / 20)
    # Runs of silent frames: edges where `silent` switches on (+1) and off (-1).
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    found = []
    for a, b in zip(starts, ends, strict=True):
        if a == 0 or b == count or (b - a) * HOP_SEC < MIN_PAUSE_SEC:
            continue
        # Frame k covers [k*hop, k*hop + window): the pause starts after the last loud frame's
        # window and ends where the first loud frame after it begins.
        found.append(((int(a) - 1) * HOP_SEC + WINDOW_SEC, int(b) * HOP_SEC))
    return found


def snap_to_pauses(audio: np.ndarray, sample_rate: int, estimates: Sequence[float]) -> list[float]:
    """Boundaries between the sentences of one chunk, moved from `estimates` to where speech resumes
    after the nearest pause.

    Each estimate (seconds from the start of `audio`, in order) may move to the end of a pause that
    lies closer to it than to the estimates on either side; otherwise it stays. The result is in
    order, one boundary per estimate.
    """
    duration = len(audio) / sample_rate
    found = [end for _, end in pauses(audio, sample_rate)]
    out: list[float] = []
    for k, estimate in enumerate(estimates):
        low = (estimates[k - 1] + estimate) / 2 if k else 0.0
        high = (estimate + estimates[k + 1]) / 2 if k + 1 < len(estimates) else duration
        floor = out[-1] if out else 0.0
        near = [t for t in found if max(low, floor) < t <= high]
        out.append(min(near, key=lambda t: abs(t - estimate)) if near else max(estimate, floor))
    return out
