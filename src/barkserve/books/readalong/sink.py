"""The read-along book as a job's chapter sink: each chapter's audio as MP3, then the EPUB at the end."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from barkserve.audio.encode import FORMATS, encode
from barkserve.books.package import ChapterSink
from barkserve.books.readalong.model import ReadAlongBook, ReadAlongChapter
from barkserve.books.readalong.writer import write_readalong
from barkserve.captions import Cue

AUDIO_FORMAT = "mp3"  # a core media type of EPUB 3 that every reading system plays


class ReadAlongSink(ChapterSink):
    """Takes chapters (`add`, then `add_captions` with the chapter's captions timed from its start) and
    writes the read-along EPUB when the `with` block ends; `warnings` then says what it could not mark."""

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        titles: Sequence[str],
        texts: Sequence[str],
        book: ReadAlongBook,
        words: bool,
    ) -> None:
        super().__init__(path)
        self.rate = sample_rate
        self.book = book
        self.words = words
        self.warnings: list[str] = []
        self._pending = list(zip(titles, texts, strict=True))
        self._chapters: list[ReadAlongChapter] = []
        self._audio: list[Path] = []
        self._folder = tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent)
        self._failed = False

    def _add(self, audio: np.ndarray) -> None:
        path = Path(self._folder.name) / f"chapter{len(self._audio) + 1:04d}.{AUDIO_FORMAT}"
        path.write_bytes(encode(audio, self.rate, FORMATS[AUDIO_FORMAT]))
        self._audio.append(path)

    def add_captions(self, cues: Sequence[Cue]) -> None:
        """The captions of the chapter added last, timed from its start."""
        title, text = self._pending[len(self._chapters)]
        self._chapters.append(ReadAlongChapter(title, text, self._audio[-1], tuple(cues)))

    def _close(self) -> None:
        if not self._failed:
            self.warnings = write_readalong(self._staged.file, self.book, self._chapters, self.words)

    def __exit__(self, kind: object, *exc: object) -> None:
        self._failed = kind is not None
        try:
            super().__exit__(kind, *exc)
        finally:
            self._folder.cleanup()
