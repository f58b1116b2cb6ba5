"""A book's audio as a file: an .m4b with chapter marks, title, author and cover, or a zip of chapters and captions.

Loudness: every chapter is brought to TARGET_LUFS integrated loudness (EBU R128 / ITU-R BS.1770,
measured with pyloudnorm), then scaled down if its peak would pass PEAK_CEILING_DB, so a chapter may end
up quieter than the target but never clips. -18 LUFS is the usual level of spoken-word audio
(audiobook platforms ask for about -18 to -23).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from barkserve.audio.encode import FORMATS, AudioFormat, encode
from barkserve.audio.files import storage_errors
from barkserve.captions import Cue, render

TARGET_LUFS = -18.0
PEAK_CEILING_DB = -1.0
CHAPTER_GAP_SEC = 1.5  # silence at the end of every chapter but the last
M4B_BITRATE = 64_000  # AAC, mono: plenty for speech
MIN_LOUDNESS_SEC = 0.4  # BS.1770 measures over 400 ms blocks; shorter audio keeps its level
CHAPTER_CAPTION_FORMATS = ("srt", "vtt")  # what players read beside an audio file of the same name


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


class _Staged:
    """A file written under a temporary name beside `path` and renamed into place only by `commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with storage_errors(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        self.tmp = Path(tmp)
        self.file: BinaryIO = os.fdopen(fd, "w+b")

    def commit(self) -> None:
        with storage_errors(self.path.parent):
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class ChapterSink:
    """Takes a book's chapters one at a time (so a long book is never all in memory) and puts its
    file in place when the `with` block ends without an error; an error leaves nothing behind."""

    def __init__(self, path: Path) -> None:
        self._staged = _Staged(path)

    def add(self, audio: np.ndarray) -> None:
        with storage_errors(self._staged.path.parent):
            self._add(audio)

    def _add(self, audio: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Finish the file's contents (trailers, indexes) before it is put in place."""

    def __enter__(self) -> ChapterSink:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is not None:
            with contextlib.suppress(Exception):  # close the encoder before its file; the error is the caller's
                self._close()
            self._staged.discard()
            return
        try:
            with storage_errors(self._staged.path.parent):
                self._close()
        except BaseException:
            self._staged.discard()
            raise
        self._staged.commit()


class FlacSink(ChapterSink):
    """The whole book as one 16-bit FLAC file (the job's final.flac)."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        super().__init__(path)
        self._file = sf.SoundFile(
            self._staged.file, "w", samplerate=sample_rate, channels=1, format="FLAC", subtype="PCM_16"
        )

    def _add(self, audio: np.ndarray) -> None:
        self._file.write(np.clip(audio, -1.0, 1.0))

    def _close(self) -> None:
        self._file.close()


class M4bSink(ChapterSink):
    """AAC in an MP4 audiobook: chapter marks (known up front from the chapters' lengths), title,
    author, genre Audiobook and the cover."""

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        titles: Sequence[str],
        lengths: Sequence[int],
        title: str,
        author: str | None = None,
        cover: bytes | None = None,
    ) -> None:
        import av

        super().__init__(path)
        self.rate = sample_rate
        # The mp4 muxer (not ipod) because only it stores a cover; players read both as .m4b.
        # bitexact: no library version tag, so the same audio gives the same bytes.
        options = {"brand": "M4B ", "fflags": "+bitexact"}
        self._container = av.open(self._staged.file, "w", format="mp4", options=options)
        metadata = {"title": title, "album": title, "genre": "Audiobook"}
        if author:
            metadata |= {"artist": author, "album_artist": author}
        self._container.metadata.update(metadata)
        self._stream = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        self._stream.bit_rate = M4B_BITRATE
        self._picture = _add_cover(self._container, cover)
        starts = [sum(lengths[:k]) for k in range(len(lengths))]
        marks = zip(titles, starts, [*starts[1:], sum(lengths)], strict=True)
        self._container.set_chapters(
            [
                {"id": k + 1, "start": s, "end": e, "time_base": Fraction(1, sample_rate), "metadata": {"title": t}}
                for k, (t, s, e) in enumerate(marks)
            ]
        )

    def _add(self, audio: np.ndarray) -> None:
        import av

        if not len(audio):
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _close(self) -> None:
        import av

        for packet in self._stream.encode(None):
            self._container.mux(packet)
        if self._picture is not None:
            cover_stream, data = self._picture
            still = av.Packet(data)
            still.stream, still.pts, still.dts, still.time_base = cover_stream, 0, 0, Fraction(1, 90000)
            self._container.mux(still)
        self._container.close()


class ZipSink(ChapterSink):
    """One file per chapter in `fmt`, `NN - Title.ext`, in a zip archive; each chapter's captions
    (`add_captions`) beside its audio as `NN - Title.srt` and `.vtt`."""

    def __init__(self, path: Path, sample_rate: int, titles: Sequence[str], fmt: AudioFormat | str) -> None:
        super().__init__(path)
        self.rate = sample_rate
        self.fmt = fmt if isinstance(fmt, AudioFormat) else FORMATS[fmt]
        self._names = iter(chapter_file_names(titles, self.fmt))
        self._last = ""  # the name of the chapter file added last
        self._archive = zipfile.ZipFile(self._staged.file, "w", zipfile.ZIP_STORED)

    def _add(self, audio: np.ndarray) -> None:
        self._last = next(self._names)
        self._archive.writestr(self._last, encode(audio, self.rate, self.fmt))

    def add_captions(self, cues: Sequence[Cue]) -> None:
        """The captions of the chapter added last, timed from its start, in CHAPTER_CAPTION_FORMATS."""
        stem = self._last.rsplit(".", 1)[0]
        with storage_errors(self._staged.path.parent):
            for fmt in CHAPTER_CAPTION_FORMATS:
                self._archive.writestr(f"{stem}.{fmt}", render(cues, fmt).encode("utf-8"))

    def _close(self) -> None:
        self._archive.close()


def _add_cover(container: Any, cover: bytes | None) -> tuple[Any, bytes] | None:
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
    stream = container.add_stream(codec)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
    stream.time_base = Fraction(1, 90000)
    stream.disposition = av.stream.Disposition.attached_pic
    return stream, cover


def chapter_file_names(titles: Sequence[str], fmt: AudioFormat) -> list[str]:
    """`01 - The Harbour.mp3`: numbered in order, titles made safe for any file system."""
    width = max(2, len(str(len(titles))))
    names = []
    for k, title in enumerate(titles, 1):
        safe = re.sub(r"[^\w\- ,.'()]+", "_", title).strip(" ._")[:80] or "Chapter"
        names.append(f"{k:0{width}d} - {safe}.{fmt.extension}")
    return names
