"""Read-along books: EPUB 3 with Media Overlays, the text highlighted as the audio reads it.

with open("book-readalong.epub", "wb") as out:
    warnings = write_readalong(out, ReadAlongBook(title, source=epub_bytes), chapters)
"""

from __future__ import annotations

from barkserve.books.readalong.model import ReadAlongBook, ReadAlongChapter
from barkserve.books.readalong.writer import ACTIVE_CLASS, write_readalong

__all__ = ["ACTIVE_CLASS", "ReadAlongBook", "ReadAlongChapter", "write_readalong"]
