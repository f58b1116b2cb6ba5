"""Recordings in: formats, mono, resampling, loudness, trimming, and every bad input."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cloning_helpers import voice_like, write_audio

from barkserve.audio.dsp import resample
from barkserve.cloning import audio_in
from barkserve.errors import AudioTooLarge, InvalidAudio, UnsupportedAudio
from barkserve.server.errors import http_status


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_each_format_decodes_to_mono_at_both_rates(tmp_path: Path, ext: str) -> None:
    path = write_audio(tmp_path / f"ref.{ext}", 2.5, rate=44_100, channels=2)
    ref = audio_in.prepare_reference(path)
    assert ref.source_format == ext
    assert ref.wav24.ndim == 1 and ref.wav16.ndim == 1
    assert ref.wav24.dtype == np.float32
    # Both versions cover the same audio: lengths in the ratio of the rates (within a frame).
    assert abs(len(ref.wav24) / 24_000 - len(ref.wav16) / 16_000) < 0.02
    assert 2.3 < ref.duration_sec <= 2.6
    assert not ref.trimmed


def test_resampler_keeps_a_tone_at_its_frequency() -> None:
    rate = 44_100
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    for out_rate in (24_000, 16_000):
        out = resample(tone, rate, out_rate)
        assert len(out) == out_rate
        spectrum = np.abs(np.fft.rfft(out))
        assert np.argmax(spectrum) == 1000  # 1 Hz bins over one second


def test_loudness_is_normalized_whatever_the_input_level(tmp_path: Path) -> None:
    levels = []
    for i, level in enumerate((0.02, 0.5)):
        ref = audio_in.prepare_reference(write_audio(tmp_path / f"{i}.wav", 2.0, level=level))
        levels.append(20 * np.log10(np.sqrt(np.mean(ref.wav24.astype(np.float64) ** 2))))
        assert np.abs(ref.wav24).max() <= 10 ** (audio_in.PEAK_DBFS / 20) + 1e-3
    # 28 dB apart on input, within 1 dB of each other and of the target on output.
    assert abs(levels[0] - levels[1]) < 1.0
    assert abs(levels[0] - audio_in.TARGET_RMS_DBFS) < 1.5


def test_long_recording_is_trimmed_and_says_so(tmp_path: Path) -> None:
    ref = audio_in.prepare_reference(write_audio(tmp_path / "long.wav", 20.0, channels=1))
    assert ref.trimmed
    assert ref.original_sec == pytest.approx(20.0)
    assert ref.duration_sec == pytest.approx(audio_in.MAX_SECONDS, abs=0.01)


def test_silence_at_the_ends_is_cut_before_the_length_checks(tmp_path: Path) -> None:
    rate = 16_000
    speech = voice_like(1.5, rate)
    padded = np.concatenate([np.zeros(rate * 2, np.float32), speech, np.zeros(rate * 2, np.float32)])
    sf.write(tmp_path / "padded.wav", padded, rate)
    ref = audio_in.prepare_reference(tmp_path / "padded.wav")
    assert ref.duration_sec == pytest.approx(1.5, abs=0.05)


def test_streams_and_bytes_are_accepted(tmp_path: Path) -> None:
    data = write_audio(tmp_path / "ref.flac", 1.5).read_bytes()
    assert audio_in.prepare_reference(data).source_format == "flac"
    assert audio_in.prepare_reference(io.BytesIO(data)).source_format == "flac"


def _wav_bytes(samples: np.ndarray, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV")
    return buf.getvalue()


def _aiff_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, voice_like(2.0, 16_000), 16_000, format="AIFF")
    return buf.getvalue()


BAD_INPUTS = [
    ("too_short", lambda: _wav_bytes(voice_like(0.5, 16_000)), InvalidAudio, "at least 1 s"),
    ("silent", lambda: _wav_bytes(np.zeros(16_000 * 3, np.float32)), InvalidAudio, "silent"),
    ("near_silent", lambda: _wav_bytes(voice_like(3.0, 16_000, level=1e-5)), InvalidAudio, "silent"),
    ("corrupt_wav", lambda: _wav_bytes(voice_like(2.0, 16_000))[:30], InvalidAudio, "could not be decoded"),
    ("garbage_after_flac_magic", lambda: b"fLaC" + bytes(range(256)) * 8, InvalidAudio, "could not be decoded"),
    ("aiff", _aiff_bytes, UnsupportedAudio, "unsupported"),
    ("text", lambda: b"hello, this is not audio at all", UnsupportedAudio, "unsupported"),
    ("aac_adts", lambda: bytes([0xFF, 0xF1, 0x50, 0x80]) + bytes(400), UnsupportedAudio, "unsupported"),
    ("empty", lambda: b"", InvalidAudio, "empty"),
]


@pytest.mark.parametrize(("case", "make", "error", "words"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_recordings_raise_the_right_error(case: str, make, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as info:
        audio_in.prepare_reference(make())
    assert 400 <= http_status(info.value) < 500


def test_too_large_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "big.wav", 3.0)
    with pytest.raises(AudioTooLarge) as info:
        audio_in.prepare_reference(path, max_bytes=1024)
    assert http_status(info.value) == 413
    with pytest.raises(AudioTooLarge):
        audio_in.prepare_reference(io.BytesIO(path.read_bytes()), max_bytes=1024)
    with pytest.raises(InvalidAudio, match="no such file"):
        audio_in.prepare_reference(tmp_path / "missing.wav")


BOMB_CHILD = """
import resource, sys
from barkserve.cloning import audio_in
from barkserve.errors import InvalidAudio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    audio_in.prepare_reference(sys.argv[1])
    outcome = "accepted"
except InvalidAudio as exc:
    outcome = exc.message
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, outcome, sep="\\n")
"""


def test_a_decompression_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    # 30 minutes of stereo silence at 48 kHz: a 330 KiB FLAC that decodes to 690 MB of float32.
    bomb = tmp_path / "bomb.flac"
    second = np.zeros((48_000, 2), np.float32)
    with sf.SoundFile(str(bomb), "w", 48_000, 2, format="FLAC") as f:
        for _ in range(1800):
            f.write(second)
    assert bomb.stat().st_size < 1_048_576
    child = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(bomb)], capture_output=True, text=True, check=True)
    before_kb, peak_kb, outcome = child.stdout.strip().split("\n", 2)
    assert "silent" in outcome
    # Peak RSS of the process that decoded it (Linux reports KiB): the decode cap keeps it far under
    # the 690 MB that decoding the whole file would take.
    assert int(peak_kb) - int(before_kb) < 200 * 1024
