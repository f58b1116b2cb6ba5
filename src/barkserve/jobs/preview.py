"""A book job's plan as a person checks it before it starts: each chapter's first words, words, chunks,
language and voices, with flags on chapters that are only a title or mostly code listings and tables.

`barkserve book FILE --plan [--json]` prints it and `POST /books/plan` answers it; both read the book and
check the job with the same `read_book` and `prepare_book_job` as the job itself.
"""

from __future__ import annotations

from typing import Any

from barkserve.books.model import Book
from barkserve.jobs.book import estimated_seconds, plan_chapters
from barkserve.jobs.submit import JobRequest
from barkserve.synthesizer import Synthesizer

FIRST_WORDS = 12
# A chapter with at most this many words besides its title's is "only a title".
TITLE_ONLY_WORDS = 3
# A chapter whose words are more than this share code listings or tables is flagged.
CODE_SHARE = 0.5


def plan_view(synth: Synthesizer, request: JobRequest, book: Book, numbers: list[int] | None) -> dict[str, Any]:
    """The plan of a prepared book job (`numbers`: the chapters chosen, from 1; all when None)."""
    assert request.book is not None  # a book job's request
    chapters = request.book["chapters"]
    plan = plan_chapters(synth, chapters, request.model, request.options.to_dict())
    seconds = estimated_seconds(plan)
    numbers = numbers or list(range(1, len(chapters) + 1))
    rows = []
    for number, chapter, chunks, sec in zip(numbers, chapters, plan.chapter_chunks, seconds, strict=True):
        source = book.chapters[number - 1]
        words = source.text.split()
        rows.append(
            {
                "number": number,
                "title": chapter["title"],
                "language": book.language,
                "voices": list(dict.fromkeys(s["voice"] for s in chapter["segments"])),
                "words": len(words),
                "chunks": chunks,
                "estimated_seconds": round(sec, 1),
                "first_words": " ".join(words[:FIRST_WORDS]),
                "flags": chapter_flags(source.title, len(words), source.code_words),
            }
        )
    return {
        "title": request.book["title"],
        "author": request.book["author"],
        "language": book.language,
        "voice": request.voice,
        "chapters": rows,
        "chunks": sum(plan.chapter_chunks),
        "estimated_seconds": round(sum(seconds), 1),
        "warnings": list(request.warnings),
        "cast": request.cast,
    }


def chapter_flags(title: str, words: int, code_words: int) -> list[str]:
    """What a person should look at in a chapter: "only a title", "mostly code or tables"."""
    flags = []
    if words - len(title.split()) <= TITLE_ONLY_WORDS:
        flags.append("only a title")
    if words and code_words > CODE_SHARE * words:
        flags.append("mostly code or tables")
    return flags
