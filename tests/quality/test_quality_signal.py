"""Signal checks on synthetic clips whose silences, clipping and levels are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from barkserve.quality import measure_signal, real_time_factor
from barkserve.quality.signal import MIN_DBFS

RATE = 24_000


def tone(sec: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(sec * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def gap(sec: float) -> np.ndarray:
    return np.zeros(round(sec * RATE), dtype=np.float32)


@pytest.mark.parametrize("gain", [1.0, 0.01])
def test_silences_are_found_where_they_were_put(gain: float) -> None:
    clip = gain * np.concatenate([gap(0.5), tone(1.0), gap(0.3), tone(0.7), gap(0.12), tone(0.4), gap(0.2)])
    m = measure_signal(clip, RATE)
    assert m.duration_sec == pytest.approx(3.22)
    # 10 ms frames: each measure is within a frame of the truth, whatever the clip's gain.
    assert m.leading_silence_sec == pytest.approx(0.5, abs=0.011)
    assert m.trailing_silence_sec == pytest.approx(0.2, abs=0.011)
    assert m.longest_internal_silence_sec == pytest.approx(0.3, abs=0.011)
    assert not m.silent


def test_quiet_noise_between_words_is_silence_but_speech_level_is_not() -> None:
    rng = np.random.default_rng(0)
    hiss = (0.001 * rng.standard_normal(round(0.4 * RATE))).astype(np.float32)  # about -60 dBFS
    m = measure_signal(np.concatenate([tone(0.5), hiss, tone(0.5)]), RATE)
    assert m.longest_internal_silence_sec == pytest.approx(0.4, abs=0.011)
    murmur = tone(0.4, amplitude=0.1)  # 14 dB under the words: speech, not silence
    assert measure_signal(np.concatenate([tone(0.5), murmur, tone(0.5)]), RATE).longest_internal_silence_sec == 0.0


def test_digital_silence() -> None:
    m = measure_signal(gap(1.0), RATE)
    assert m.silent
    assert m.leading_silence_sec == m.trailing_silence_sec == pytest.approx(1.0)
    assert m.rms_dbfs == m.peak_dbfs == MIN_DBFS
    assert m.clipping_fraction == 0.0


def test_clipping_fraction_counts_full_scale_samples() -> None:
    clip = tone(1.0, amplitude=0.5)
    assert measure_signal(clip, RATE).clipping_fraction == 0.0
    clip[::100] = 1.0  # 240 of 24,000 samples
    clip[1::200] = -1.0  # 120 more
    assert measure_signal(clip, RATE).clipping_fraction == pytest.approx(360 / 24_000)


def test_levels_in_dbfs() -> None:
    square = np.where(np.arange(RATE) % 100 < 50, 1.0, -1.0).astype(np.float32)
    assert measure_signal(square * 0.999, RATE).rms_dbfs == pytest.approx(0.0, abs=0.01)
    assert measure_signal(square * 0.1, RATE).rms_dbfs == pytest.approx(-20.0, abs=0.01)
    m = measure_signal(tone(1.0, amplitude=1.0), RATE)
    assert m.rms_dbfs == pytest.approx(-3.01, abs=0.01)
    assert m.peak_dbfs == pytest.approx(0.0, abs=0.01)


def test_duration_against_the_text() -> None:
    text = "a" * 28  # 28 Latin characters at 14 per second: 2 s expected
    m = measure_signal(tone(3.0), RATE, text)
    assert m.expected_sec == pytest.approx(2.0)
    assert m.duration_ratio == pytest.approx(1.5)
    assert measure_signal(tone(1.0), RATE, "你好你好你").expected_sec == pytest.approx(1.0)  # 5 CJK chars/s
    no_text = measure_signal(tone(1.0), RATE)
    assert no_text.expected_sec is None and no_text.duration_ratio is None


def test_real_time_factor_and_bad_inputs() -> None:
    assert real_time_factor(2.0, 8.0) == 0.25
    with pytest.raises(ValueError, match="audio_sec"):
        real_time_factor(1.0, 0.0)
    with pytest.raises(ValueError, match="mono"):
        measure_signal(np.zeros((2, 100)), RATE)
    with pytest.raises(ValueError, match="rate"):
        measure_signal(tone(0.1), 0)


def test_the_signal_gates_defaults_are_the_committed_calibrations_choices() -> None:
    import json
    from pathlib import Path

    from barkserve.qc import CALIBRATED_MIN_MOS, CALIBRATED_MIN_SIMILARITY
    from barkserve.quality.signal import SignalGate

    path = Path(__file__).parents[2] / "benchmarks" / "results" / "cpu-2core-qc-calibration.json"
    result = json.loads(path.read_text())
    assert len(result["languages"]) >= 6 and not result["smoke"]
    assert SignalGate() == SignalGate(**result["signal"]["chosen"])
    assert result["signal"]["gate"]["false_alarm_rate"] == 0.0
    assert {name: r["chosen"]["threshold"] for name, r in result["mos"].items()} == CALIBRATED_MIN_MOS
    assert {"resemblyzer": result["speaker"]["resemblyzer"]["chosen"]["threshold"]} == CALIBRATED_MIN_SIMILARITY


def test_a_steady_pitch_is_voiced_speech_like_and_white_noise_is_flat_and_unvoiced() -> None:
    from barkserve.quality.signal import signal_problems

    rng = np.random.default_rng(0)
    voiced = measure_signal(tone(1.0), RATE)  # 220 Hz: in the pitch range, one peak in the spectrum
    assert voiced.voiced_share == 1.0 and voiced.spectral_flatness < 0.01
    assert signal_problems(voiced) == []
    noise = measure_signal((0.1 * rng.standard_normal(RATE)).astype(np.float32), RATE)
    assert noise.voiced_share < 0.05 and noise.spectral_flatness > 0.4
    problems = signal_problems(noise)
    assert len(problems) == 2 and all(p.startswith("not speech") for p in problems), problems
    assert signal_problems(measure_signal(gap(1.0), RATE))[0].startswith("silence")
    square = np.sign(tone(1.0)).astype(np.float32)  # every sample at full scale
    assert any(p.startswith("clipped") for p in signal_problems(measure_signal(square, RATE)))


def test_the_measures_do_not_depend_on_the_sample_rate() -> None:
    from barkserve.audio.dsp import resample

    rng = np.random.default_rng(1)
    clip = np.concatenate([tone(0.5), (0.05 * rng.standard_normal(RATE // 2)).astype(np.float32)])
    at24 = measure_signal(clip, RATE)
    at16 = measure_signal(resample(clip, RATE, 16_000), 16_000)
    assert at16.voiced_share == pytest.approx(at24.voiced_share, abs=0.03)
    assert at16.spectral_flatness == pytest.approx(at24.spectral_flatness, rel=0.2, abs=0.01)
