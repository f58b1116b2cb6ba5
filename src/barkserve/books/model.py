"""What a book is once read: a title, an author, a cover and its chapters, each a title and plain text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from barkserve.errors import InvalidBook, InvalidRequest

MAX_TITLE_CHARS = 200
# More chapters than any book has: each becomes a job part with its own files and chapter mark.
MAX_CHAPTERS = 2_000
CLOSING = ".!?:;…\"'”’)]»"


@dataclass(frozen=True)
class Chapter:
    """One chapter: its title (for chapter marks) and its text as it is read aloud; `code_words` of its
    words are in code listings or tables (when the reader can tell), for the plan's flags."""

    title: str
    text: str
    code_words: int = 0


@dataclass(frozen=True)
class Book:
    """A book read from a file; `cover` is the cover image's bytes (JPEG or PNG) when the book has one.

    `language` is the book's language as a lower-case ISO 639-1 code ("de", from `de-AT`) when it is
    known: from the book's metadata, else detected from its text (see `books.language`). `skipped`
    says what of the file was not read and why (a document that could not be parsed, a table of
    contents page, a non-linear note), one line each, for the plan and the job's warnings.
    """

    title: str
    author: str | None = None
    cover: bytes | None = field(default=None, repr=False)
    chapters: tuple[Chapter, ...] = ()
    language: str | None = None
    skipped: tuple[str, ...] = ()
    # The EPUB file the book was read from (None for other types): a read-along book is written from it.
    source: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "chapters", tuple(self.chapters))
        object.__setattr__(self, "skipped", tuple(self.skipped))

    def select(self, numbers: list[int] | None) -> Book:
        """The book with only the chapters numbered `numbers` (1-based, in book order); all when None."""
        if numbers is None:
            return self
        last = len(self.chapters)
        outside = [n for n in numbers if not 1 <= n <= last]
        if outside:
            raise InvalidRequest(f"chapters {outside} do not exist; this book has chapters 1-{last}")
        return replace(self, chapters=tuple(self.chapters[n - 1] for n in sorted(set(numbers))))


def parse_chapters(spec: object) -> list[int] | None:
    """`"3-5"`, `"1,4,7-9"` or None (every chapter) as sorted 1-based chapter numbers."""
    if spec is None or spec == "":
        return None
    if not isinstance(spec, str):
        raise InvalidRequest(f"chapters must be a string like '3-5' or '1,4,7-9'; got {spec!r}")
    numbers: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d{1,6})\s*(?:-\s*(\d{1,6})\s*)?", part)
        if match is None:
            raise InvalidRequest(f"chapters must look like '3-5' or '1,4,7-9'; cannot read {part.strip()!r}")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first < 1 or last < first:
            raise InvalidRequest(f"chapter ranges count from 1 and go upwards; got {part.strip()!r}")
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def clean_title(title: str, fallback: str) -> str:
    """A chapter or book title on one line, at most MAX_TITLE_CHARS characters; `fallback` when blank."""
    text = " ".join(title.split())[:MAX_TITLE_CHARS]
    return text or fallback


def as_sentence(heading: str) -> str:
    """A heading as read aloud: with a full stop when it has no closing punctuation, so that Bark
    pauses after it and it is a sentence (and a caption) of its own."""
    text = heading.rstrip()
    return text if not text or text[-1] in CLOSING else f"{text}."


def check_chapter_count(count: int, source: str) -> None:
    """An InvalidBook for a book of over MAX_CHAPTERS chapters (checked before they are built)."""
    if count > MAX_CHAPTERS:
        raise InvalidBook(
            f"{source} has {count:,} chapters (headings); books are read with up to {MAX_CHAPTERS:,}: "
            "split it into several books or use fewer headings"
        )


def check_chapters(chapters: list[Chapter], source: str) -> tuple[Chapter, ...]:
    """The chapters, or an InvalidBook naming the first one with nothing to read (or a book with none)."""
    if not chapters:
        raise InvalidBook(f"{source} has no text to read")
    check_chapter_count(len(chapters), source)
    for number, chapter in enumerate(chapters, 1):
        if not chapter.text.strip():
            raise InvalidBook(
                f"{source}: chapter {number} ({chapter.title!r}) has no text to read; remove it from the book "
                "or leave it out with --chapters (form field 'chapters')"
            )
    return tuple(chapters)
