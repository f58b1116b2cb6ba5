"""Audio encoding: wav, flac, mp3, opus, aac and raw pcm, whole or streamed."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import soundfile as sf

from barkserve.audio.dsp import to_frame
from barkserve.errors import InvalidRequest


@dataclass(frozen=True)
class AudioFormat:
    name: str
    extension: str
    mimetype: str
    container: str | None  # PyAV muxer; None for the formats written by hand
    codec: str | None


FORMATS = {
    f.name: f
    for f in (
        AudioFormat("wav", "wav", "audio/wav", None, None),
        AudioFormat("wav_float", "wav", "audio/wav", None, None),
        AudioFormat("pcm", "pcm", "audio/pcm", None, None),
        AudioFormat("flac", "flac", "audio/flac", "flac", "flac"),
        AudioFormat("mp3", "mp3", "audio/mpeg", "mp3", "libmp3lame"),
        AudioFormat("opus", "opus", "audio/ogg", "ogg", "libopus"),
        AudioFormat("aac", "aac", "audio/aac", "adts", "aac"),
    )
}


@cache
def can_encode(name: str) -> bool:
    fmt = FORMATS[name]
    if fmt.codec is None:
        return True
    try:
        import av

        av.codec.Codec(fmt.codec, "w")
    except Exception:  # PyAV missing, or FFmpeg built without this encoder
        return False
    return True


def get_format(name: object) -> AudioFormat:
    """The format called `name`; an unknown or unencodable one is a 400 listing what works."""
    available = [n for n in FORMATS if can_encode(n)]
    if not isinstance(name, str) or name not in FORMATS:
        raise InvalidRequest(f"format must be one of {available}; got {name!r}")
    if not can_encode(name):
        raise InvalidRequest(
            f"this server cannot encode {name!r} (no {FORMATS[name].codec} encoder); use one of {available}"
        )
    return FORMATS[name]


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


def encode(audio: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """Encode a whole float32 mono signal (WAV and FLAC with exact lengths in their headers)."""
    subtypes = {"wav": ("WAV", "PCM_16"), "wav_float": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_16")}
    if fmt.name in subtypes:
        container, subtype = subtypes[fmt.name]
        buf = io.BytesIO()
        sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, subtype=subtype, format=container)
        return buf.getvalue()
    encoder = StreamEncoder(fmt, sample_rate)
    return encoder.write(audio) + encoder.close()


class _Sink:
    """A non-seekable file for PyAV: it only collects what the muxer writes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class StreamEncoder:
    """Encodes audio piece by piece; `write` returns the bytes ready to send so far.

    FLAC is the exception: it is sent whole by `close`, because its STREAMINFO header must hold the
    total length, and readers such as libsndfile (`soundfile`) refuse a FLAC stream whose length is 0
    ("unknown"). WAV streams with the sizes 0xFFFFFFFF ("to the end"), which readers accept.
    """

    def __init__(self, fmt: AudioFormat, sample_rate: int) -> None:
        self.fmt, self.sample_rate = fmt, sample_rate
        self._sink = _Sink()
        self._started = False
        self._container: Any = None
        self._stream: Any = None
        self._held: list[np.ndarray] | None = [] if fmt.name == "flac" else None
        if fmt.container is not None and self._held is None:
            import av

            # bitexact: no random Ogg serial number and no library version tag, so that the same
            # audio (the same seed) always gives the same bytes.
            self._container = av.open(self._sink, mode="w", format=fmt.container, options={"fflags": "+bitexact"})
            self._stream = self._container.add_stream(fmt.codec, rate=sample_rate, layout="mono")

    @property
    def progressive(self) -> bool:
        """Whether `write` returns audio as it comes (False: `close` returns the whole file)."""
        return self._held is None

    def write(self, audio: np.ndarray) -> bytes:
        """Encode the next samples (float32 mono)."""
        if self._held is not None:
            self._held.append(np.asarray(audio, dtype=np.float32))
            return b""
        if self._container is None:
            return self._header() + self._raw(audio)
        if len(audio) == 0:  # an encoder takes no empty frame; there is nothing to encode
            return self._sink.drain()

        for packet in self._stream.encode(to_frame(audio, self.sample_rate)):
            self._container.mux(packet)
        return self._sink.drain()

    def close(self) -> bytes:
        """Flush the encoder; returns the last bytes."""
        if self._held is not None:
            audio = np.concatenate(self._held) if self._held else np.zeros(0, np.float32)
            self._held = []
            return encode(audio, self.sample_rate, self.fmt)
        if self._container is None:
            return self._header()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.drain()

    def _header(self) -> bytes:
        if self._started or self.fmt.name == "pcm":
            self._started = True
            return b""
        self._started = True
        float_wav = self.fmt.name == "wav_float"
        # Length unknown while streaming: the sizes say "to the end of the stream" (0xFFFFFFFF).
        bits, tag = (32, 3) if float_wav else (16, 1)
        block = bits // 8
        fmt_chunk = struct.pack("<HHIIHH", tag, 1, self.sample_rate, self.sample_rate * block, block, bits)
        unknown = struct.pack("<I", 0xFFFFFFFF)
        return b"RIFF" + unknown + b"WAVEfmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + unknown

    def _raw(self, audio: np.ndarray) -> bytes:
        if self.fmt.name == "wav_float":
            return np.clip(audio, -1.0, 1.0).astype("<f4").tobytes()
        return to_int16(audio).tobytes()
