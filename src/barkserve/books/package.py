"""A book's audio as a file: an .m4b with chapter marks, title, author and cover, or a zip of chapter files.

Loudness: every chapter is brought to TARGET_LUFS integrated loudness (EBU R128 / ITU-R BS.1770,
measured with pyloudnorm), then scaled down if its peak would pass PEAK_CEILING_DB, so a chapter may end
up quieter than the target but never clips. -18 LUFS is the usual level of spoken-word audio
(audiobook platforms ask for about -18 to -23).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from barkserve.audio.encode import FORMATS, AudioFormat, encode
from barkserve.audio.files import atomic_write

TARGET_LUFS = -18.0
PEAK_CEILING_DB = -1.0
CHAPTER_GAP_SEC = 1.5  # silence at the end of every chapter but the last
M4B_BITRATE = 64_000  # AAC, mono: plenty for speech
MIN_LOUDNESS_SEC = 0.4  # BS.1770 measures over 400 ms blocks; shorter audio keeps its level


@dataclass(frozen=True)
class ChapterAudio:
    """One chapter's audio as it goes into the book (loudness set, gap included)."""

    title: str
    audio: np.ndarray  # (samples,) float32
    speech_samples: int  # before the trailing gap


def normalize_loudness(audio: np.ndarray, sample_rate: int, target: float = TARGET_LUFS) -> np.ndarray:
    """`audio` at `target` LUFS integrated loudness, peak at most PEAK_CEILING_DB; silence and clips
    shorter than one measuring block are returned unchanged."""
    import pyloudnorm

    if len(audio) < MIN_LOUDNESS_SEC * sample_rate or not np.any(audio):
        return audio
    loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(audio.astype(np.float64))
    if not np.isfinite(loudness):
        return audio
    out = audio * np.float32(10 ** ((target - loudness) / 20))
    ceiling = 10 ** (PEAK_CEILING_DB / 20)
    peak = float(np.max(np.abs(out)))
    if peak > ceiling:
        out = out * np.float32(ceiling / peak)
    return out.astype(np.float32)


def chapter_audio(titles: Sequence[str], audios: Sequence[np.ndarray], sample_rate: int) -> list[ChapterAudio]:
    """Each chapter at the same loudness, with CHAPTER_GAP_SEC of silence after all but the last."""
    gap = np.zeros(round(CHAPTER_GAP_SEC * sample_rate), np.float32)
    out = []
    for k, (title, audio) in enumerate(zip(titles, audios, strict=True)):
        speech = normalize_loudness(audio, sample_rate)
        joined = speech if k == len(audios) - 1 else np.concatenate([speech, gap])
        out.append(ChapterAudio(title, joined, len(speech)))
    return out


def chapter_starts(chapters: Sequence[ChapterAudio]) -> list[int]:
    """The first sample of each chapter in the joined book."""
    starts, position = [], 0
    for chapter in chapters:
        starts.append(position)
        position += len(chapter.audio)
    return starts


def write_m4b(
    path: Path,
    chapters: Sequence[ChapterAudio],
    sample_rate: int,
    title: str,
    author: str | None = None,
    cover: bytes | None = None,
) -> Path:
    """Encode the chapters as AAC in an MP4 audiobook with chapter marks and metadata, atomically."""
    data = m4b_bytes(chapters, sample_rate, title, author, cover)
    atomic_write(path, lambda f: f.write(data))
    return path


def m4b_bytes(
    chapters: Sequence[ChapterAudio], sample_rate: int, title: str, author: str | None, cover: bytes | None
) -> bytes:
    import av

    audio = np.concatenate([c.audio for c in chapters]).astype(np.float32)
    starts = chapter_starts(chapters)
    ends = [*starts[1:], len(audio)]
    out = io.BytesIO()
    # The mp4 muxer (not ipod) because only it stores a cover; players read both as .m4b.
    with av.open(out, "w", format="mp4", options={"brand": "M4B "}) as container:
        metadata = {"title": title, "album": title, "genre": "Audiobook"}
        if author:
            metadata |= {"artist": author, "album_artist": author}
        container.metadata.update(metadata)
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        stream.bit_rate = M4B_BITRATE
        picture = _add_cover(container, cover)
        container.set_chapters(
            [
                {
                    "id": k + 1,
                    "start": s,
                    "end": e,
                    "time_base": Fraction(1, sample_rate),
                    "metadata": {"title": c.title},
                }
                for k, (c, s, e) in enumerate(zip(chapters, starts, ends, strict=True))
            ]
        )
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if picture is not None:
            cover_stream, data = picture
            still = av.Packet(data)
            still.stream, still.pts, still.dts, still.time_base = cover_stream, 0, 0, Fraction(1, 90000)  # type: ignore[assignment]
            container.mux(still)
    return out.getvalue()


def _add_cover(container: object, cover: bytes | None) -> tuple[object, bytes] | None:
    """A cover image stream (marked attached picture) for a JPEG or PNG cover; None for anything else."""
    import av

    if not cover:
        return None
    codec = "mjpeg" if cover[:3] == b"\xff\xd8\xff" else "png" if cover[:8] == b"\x89PNG\r\n\x1a\n" else None
    if codec is None:
        return None  # GIF, SVG, WebP covers: the book is still made, without a cover
    try:
        with av.open(io.BytesIO(cover)) as image:
            width, height = image.streams.video[0].codec_context.width, image.streams.video[0].codec_context.height
    except (av.FFmpegError, IndexError):
        return None  # an unreadable cover image is left out
    stream = container.add_stream(codec)  # type: ignore[attr-defined]
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
    stream.time_base = Fraction(1, 90000)
    stream.disposition = av.stream.Disposition.attached_pic
    return stream, cover


def write_zip(path: Path, chapters: Sequence[ChapterAudio], sample_rate: int, fmt: AudioFormat | str) -> Path:
    """One file per chapter, `NN - Title.ext`, in a zip archive written atomically."""
    audio_format = fmt if isinstance(fmt, AudioFormat) else FORMATS[fmt]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, chapter in zip(chapter_file_names(chapters, audio_format), chapters, strict=True):
            archive.writestr(name, encode(chapter.audio, sample_rate, audio_format))
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return path


def chapter_file_names(chapters: Sequence[ChapterAudio], fmt: AudioFormat) -> list[str]:
    """`01 - The Harbour.mp3`: numbered in order, titles made safe for any file system."""
    width = max(2, len(str(len(chapters))))
    names = []
    for k, chapter in enumerate(chapters, 1):
        safe = re.sub(r"[^\w\- ,.'()]+", "_", chapter.title).strip(" ._")[:80] or "Chapter"
        names.append(f"{k:0{width}d} - {safe}.{fmt.extension}")
    return names
