"""Reference recordings in: decode, mono, trim, loudness-normalize, resample for EnCodec and HuBERT."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.bark import SAMPLE_RATE
from barkserve.errors import AudioTooLarge, InvalidAudio, UnsupportedAudio

CODEC_RATE = SAMPLE_RATE  # Bark's EnCodec
HUBERT_RATE = 16_000  # HuBERT base
MIN_SECONDS = 1.0
# Bark speaks at most ~13-14 s per generation; a longer prompt only costs time.
MAX_SECONDS = 13.0
MAX_BYTES = 25 * 1024 * 1024
# Most audio decoded from one file: room for long leading silence before MAX_SECONDS of speech.
MAX_DECODE_SECONDS = 120.0
MAX_CHANNELS = 8
MAX_RATE = 384_000
TARGET_RMS_DBFS = -20.0
PEAK_DBFS = -1.0
# Frames quieter than this are silence: trimmed at the ends, ignored when measuring loudness.
SILENCE_DBFS = -60.0
_FRAME_SEC = 0.02
# libsndfile's names for the formats we accept.
FORMATS = {"WAV": "wav", "WAVEX": "wav", "RF64": "wav", "FLAC": "flac", "MP3": "mp3", "OGG": "ogg"}
SUPPORTED_HINT = "send a wav, flac, mp3 or ogg recording"


@dataclass(frozen=True, eq=False)
class Reference:
    """A recording ready for the encoders."""

    wav24: np.ndarray  # (samples,) float32 mono at 24 kHz, for EnCodec
    wav16: np.ndarray  # (samples,) float32 mono at 16 kHz, for HuBERT
    source_format: str  # wav | flac | mp3 | ogg
    source_rate: int
    original_sec: float  # length of the decoded file
    trimmed: bool  # True when speech past MAX_SECONDS was cut off

    @property
    def duration_sec(self) -> float:
        return len(self.wav24) / CODEC_RATE


def size_text(n_bytes: int) -> str:
    """A byte count as people read it: '25 MiB', '390 KiB'."""
    return f"{n_bytes / 1_048_576:g} MiB" if n_bytes >= 1_048_576 else f"{n_bytes // 1024} KiB"


def read_bytes(source: str | Path | bytes | IO[bytes], max_bytes: int = MAX_BYTES) -> bytes:
    """Read a path, bytes or a binary stream, refusing more than `max_bytes`."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InvalidAudio(f"{path}: no such file; give the path of a recording")
        if path.stat().st_size > max_bytes:
            raise AudioTooLarge(f"{path.name} is over {size_text(max_bytes)}; send a shorter recording")
        data = path.read_bytes()
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AudioTooLarge(f"the recording is over {size_text(max_bytes)}; send a shorter one")
    if not data:
        raise InvalidAudio(f"the recording is empty; {SUPPORTED_HINT}")
    return data


def sniff_format(data: bytes) -> str | None:
    """The container named by the file's first bytes, or None if it is none we accept."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    # MP3: an ID3 tag, or an MPEG audio frame sync (11 set bits) with a layer; AAC's ADTS has layer 0.
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "mp3"
    return None


def decode(data: bytes, max_seconds: float = MAX_DECODE_SECONDS) -> tuple[np.ndarray, int, str, float]:
    """Decode a supported file to mono float32, block by block, keeping at most `max_seconds`.

    Returns (samples, rate, format name, the file's own length in seconds). A small file can hold
    hours of audio (a FLAC of silence compresses ~1000:1), so nothing past `max_seconds` is decoded
    and memory stays bounded by `max_seconds * rate` samples whatever the file claims.
    """
    import soundfile as sf

    sniffed = sniff_format(data)
    if sniffed is None:
        raise UnsupportedAudio(f"unsupported audio format; {SUPPORTED_HINT}")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            fmt, rate, channels = FORMATS.get(f.format), int(f.samplerate), int(f.channels)
            if fmt is None:
                raise UnsupportedAudio(f"unsupported audio format; {SUPPORTED_HINT}")
            if not 1 <= channels <= MAX_CHANNELS or not 1 <= rate <= MAX_RATE:
                raise InvalidAudio(f"the {fmt} file has {channels} channels at {rate} Hz; send mono or stereo")
            blocks, kept, limit = [], 0, int(max_seconds * rate)
            for block in f.blocks(blocksize=rate, dtype="float32", always_2d=True):
                blocks.append(block[: limit - kept].mean(axis=1))
                kept += len(blocks[-1])
                if kept >= limit:
                    break
            length = f.frames / rate if f.frames > 0 else kept / rate
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as exc:
        raise InvalidAudio(f"the {sniffed} file could not be decoded ({exc}); is it complete?") from exc
    samples = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    if samples.size == 0 or not np.isfinite(samples).all():
        raise InvalidAudio(f"the {fmt} file holds no usable samples")
    return samples, rate, fmt, max(length, kept / rate)


def frame_dbfs(wav: np.ndarray, rate: int) -> np.ndarray:
    """RMS level of each 20 ms frame, in dB relative to full scale."""
    hop = max(1, int(rate * _FRAME_SEC))
    n = max(1, len(wav) // hop)
    frames = wav[: n * hop].reshape(n, hop) if len(wav) >= hop else wav[None]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return np.asarray(20 * np.log10(np.maximum(rms, 1e-10)))


def trim_silence(wav: np.ndarray, rate: int) -> np.ndarray:
    """Cut silent frames from both ends; raise `InvalidAudio` if nothing is left."""
    levels = frame_dbfs(wav, rate)
    loud = np.flatnonzero(levels > SILENCE_DBFS)
    if loud.size == 0:
        raise InvalidAudio(f"the recording is silent (quieter than {SILENCE_DBFS:.0f} dBFS throughout)")
    hop = max(1, int(rate * _FRAME_SEC))
    return wav[loud[0] * hop : (loud[-1] + 1) * hop]


def normalize_loudness(wav: np.ndarray, rate: int) -> np.ndarray:
    """Scale so the RMS of non-silent frames is TARGET_RMS_DBFS, with peaks kept under PEAK_DBFS."""
    levels = frame_dbfs(wav, rate)
    active = levels[levels > SILENCE_DBFS]
    # Mean power of the speech frames: pauses would otherwise make quiet speakers too loud.
    level = 10 * np.log10(np.mean(10 ** (active / 10))) if active.size else float(levels.max())
    gain = 10 ** ((TARGET_RMS_DBFS - level) / 20)
    peak = float(np.max(np.abs(wav))) * gain
    limit = 10 ** (PEAK_DBFS / 20)
    if peak > limit:
        gain *= limit / peak
    return (wav * gain).astype(np.float32)


def prepare_reference(
    source: str | Path | bytes | IO[bytes], max_seconds: float = MAX_SECONDS, max_bytes: int = MAX_BYTES
) -> Reference:
    """Turn a recording into mono, trimmed, normalized audio at 24 kHz and 16 kHz.

    Args:
        source: A path, the file's bytes, or a binary stream (an upload).
        max_seconds: Longest part kept; speech after it is cut off (`Reference.trimmed`).
        max_bytes: Largest accepted file.

    Returns:
        The prepared `Reference`.

    Raises:
        AudioTooLarge: The file is over `max_bytes`.
        UnsupportedAudio: Not wav, flac, mp3 or ogg.
        InvalidAudio: Corrupt, silent, or under MIN_SECONDS of sound.
    """
    mono, rate, fmt, original_sec = decode(read_bytes(source, max_bytes))  # (samples,) mono
    speech = trim_silence(mono, rate)
    if len(speech) / rate < MIN_SECONDS:
        raise InvalidAudio(
            f"the recording has {len(speech) / rate:.2f} s of sound; at least {MIN_SECONDS:.0f} s is needed "
            "(5-13 s of clear speech clones best)"
        )
    keep = int(max_seconds * rate)
    trimmed = len(speech) > keep
    speech = normalize_loudness(speech[:keep], rate)
    return Reference(
        wav24=resample(speech, rate, CODEC_RATE),
        wav16=resample(speech, rate, HUBERT_RATE),
        source_format=fmt,
        source_rate=rate,
        original_sec=original_sec,
        trimmed=trimmed,
    )
