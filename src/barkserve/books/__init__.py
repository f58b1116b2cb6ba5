"""Books: read an ebook into chapters, give each chapter and speaker a voice, package the audio.

book = read_book(Path("book.epub").read_bytes(), "book.epub", max_bytes=config.max_book_bytes)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePath

from barkserve.books.language import book_language
from barkserve.books.model import Book, Chapter, parse_chapters
from barkserve.errors import BookTooLarge, InvalidRequest, UnsupportedBook

BOOK_TYPES = (".epub", ".pdf", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt")


def read_book(data: bytes, filename: str, max_bytes: int | None = None) -> Book:
    """Read a book file's bytes; its type comes from `filename`'s extension.

    Raises:
        BookTooLarge: over `max_bytes` (the `max_book_bytes` setting).
        UnsupportedBook: an extension not in BOOK_TYPES.
        ProtectedBook: DRM-encrypted content.
        InvalidBook: a damaged file, no text (a PDF without a text layer), or an empty chapter.
        InvalidRequest: a text file that is not UTF-8.
    """
    suffix = PurePath(filename).suffix.lower()
    name = PurePath(filename).name
    if suffix not in BOOK_TYPES:
        raise UnsupportedBook(f"{name!r} is not a book file barkserve reads; use one of {', '.join(BOOK_TYPES)}")
    if max_bytes is not None:
        check_size(len(data), name, max_bytes)
    book = read_by_type(data, name, suffix)
    if book.language is None:  # no metadata says it: detected from the text
        book = replace(book, language=book_language(None, "\n".join(c.text for c in book.chapters[:20])))
    return book


def read_by_type(data: bytes, name: str, suffix: str) -> Book:
    """The book in a file of type `suffix`, by that type's reader."""
    stem = PurePath(name).stem
    if suffix == ".epub":
        from barkserve.books.epub import read_epub

        return replace(read_epub(data, name), source=data)
    if suffix == ".pdf":
        from barkserve.books.pdf import read_pdf

        return read_pdf(data, name)
    from barkserve.books.plain import read_html, read_markdown, read_txt

    if suffix in (".html", ".htm", ".xhtml"):
        return read_html(data, stem)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # invalid_request, as before books had their own errors: clients may check the code.
        raise InvalidRequest(f"{name} is not UTF-8 text; save it as UTF-8") from exc
    return read_markdown(text, stem) if suffix in (".md", ".markdown") else read_txt(text, stem)


def check_size(size: int, name: str, max_bytes: int) -> None:
    """Raise BookTooLarge when a book file of `size` bytes is over `max_bytes` (setting max_book_bytes)."""
    if size > max_bytes:
        raise BookTooLarge(
            f"{name} is {size:,} bytes; books are read up to {max_bytes:,} bytes (setting max_book_bytes)"
        )


__all__ = ["BOOK_TYPES", "Book", "Chapter", "check_size", "parse_chapters", "read_book"]
