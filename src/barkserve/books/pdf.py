"""PDF books with a text layer (pypdf).

- A PDF with no text layer (scanned pages) is refused with how to fix it (OCR it first).
- Chapters: the outline's (bookmarks') top-level entries, each from its page to the next one's; without
  an outline, the text's chapter headings as in a `.txt` file; else one chapter.
- Running heads and feet: a line among the first or last two of a page that recurs (digits ignored)
  on at least half of the pages (and at least 3) is left out; so is a page number alone on such a
  line ("12", "- 12 -", "Page 12 of 300", "xii").
- A word hyphenated across a line break is joined again.
- Footnotes are kept as they stand in the text layer: a PDF does not mark them.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from typing import Any

from barkserve.books.language import book_language
from barkserve.books.model import Book, Chapter, check_chapters, clean_title
from barkserve.books.plain import read_txt
from barkserve.errors import BookTooLarge, InvalidBook, ProtectedBook

EDGE_LINES = 2
PAGE_NUMBER = re.compile(r"[\W_]*(?:page\s+)?(?:\d{1,5}|[ivxlcdm]{1,8})(?:\s+of\s+\d{1,5})?[\W_]*", re.IGNORECASE)
HYPHENATED = re.compile(r"([a-z])-\n([a-z])")
# Bounds on the work a PDF can ask for: pypdf reads text at a few hundred KB of page content a second,
# and a small file can hold many pages, or pages sharing one stream that unpacks to tens of MB.
MAX_PAGES = 10_000
MAX_CONTENT_BYTES = 16 * 1024 * 1024


def read_pdf(data: bytes, name: str) -> Book:
    """The chapters, title and author of a PDF file's bytes."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ProtectedBook(f"{name} is encrypted with a password; use an unprotected copy")
        pages = page_texts(reader, name)
    except InvalidBook:
        raise
    except Exception as exc:  # pypdf fails on damaged files in many ways (RecursionError, IndexError...)
        raise InvalidBook(f"{name} is not a readable PDF ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not any(p.strip() for p in pages):
        raise InvalidBook(
            f"{name} has no text layer (its pages are images, e.g. a scan), so there is no text to read; "
            "add one with OCR first (for example `ocrmypdf in.pdf out.pdf`)"
        )
    pages = strip_running_lines(pages)
    info = reader.metadata
    title = clean_title(str(info.title), name) if info is not None and info.title else clean_title(name, "Untitled")
    author = str(info.author).strip() if info is not None and info.author else None
    language = book_language(declared_language(reader), join_pages(pages[:40]))
    starts = outline_starts(reader)
    if not starts:
        found = read_txt(join_pages(pages), title)
        return Book(title, author, None, found.chapters, language)
    chapters = []
    for k, (page, heading) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(pages)
        chapters.append(Chapter(clean_title(heading, f"Chapter {k + 1}"), join_pages(pages[page:end])))
    if starts[0][0] > 0 and join_pages(pages[: starts[0][0]]).strip():
        chapters.insert(0, Chapter(title, join_pages(pages[: starts[0][0]])))
    return Book(title, author, None, check_chapters(chapters, name), language)


def declared_language(reader: Any) -> str | None:
    """The document catalog's /Lang ("de-DE"), if any."""
    try:
        lang = reader.trailer["/Root"].get("/Lang")
    except Exception:  # a damaged catalog: the language is detected from the text instead
        return None
    return str(lang) if lang else None


def page_texts(reader: Any, name: str) -> list[str]:
    """Each page's text; BookTooLarge past MAX_PAGES pages or MAX_CONTENT_BYTES of page content in all."""
    count = len(reader.pages)
    if count > MAX_PAGES:
        raise BookTooLarge(f"{name} has {count:,} pages; PDFs are read up to {MAX_PAGES:,} pages")
    texts: list[str] = []
    content = 0
    for page in reader.pages:
        stream = page.get_contents()
        content += len(stream.get_data()) if stream is not None else 0
        if content > MAX_CONTENT_BYTES:
            raise BookTooLarge(
                f"{name} has over {MAX_CONTENT_BYTES:,} bytes of page content (by page {len(texts) + 1}); "
                "split the book into smaller PDFs"
            )
        texts.append(page.extract_text() or "")
    return texts


def outline_starts(reader: Any) -> list[tuple[int, str]]:
    """(first page, title) of each top-level outline entry, in page order; [] without an outline."""
    try:
        outline = reader.outline
    except Exception:  # a broken outline is no reason to refuse a readable book
        return []
    starts = []
    for entry in outline:
        if isinstance(entry, list):
            continue  # children of the entry before
        try:
            page = reader.get_destination_page_number(entry)
        except Exception:
            continue
        if page is not None and page >= 0:
            starts.append((page, str(entry.title)))
    return sorted(dict((p, t) for p, t in reversed(starts)).items())


def strip_running_lines(pages: list[str]) -> list[str]:
    """Each page without its running heads, feet and page numbers."""
    split = [[line for line in page.splitlines() if line.strip()] for page in pages]
    counts: Counter[str] = Counter()
    for lines in split:
        counts.update({_key(line) for line in _edges(lines)})
    needed = max(3, (len(pages) + 1) // 2)
    running = {key for key, n in counts.items() if n >= needed}
    out = []
    for lines in split:
        edges = set(range(min(EDGE_LINES, len(lines)))) | set(range(max(0, len(lines) - EDGE_LINES), len(lines)))
        kept = [
            line
            for i, line in enumerate(lines)
            if not (i in edges and (_key(line) in running or PAGE_NUMBER.fullmatch(line.strip())))
        ]
        out.append("\n".join(kept))
    return out


def join_pages(pages: list[str]) -> str:
    """Pages as one text, words hyphenated across lines joined again."""
    return HYPHENATED.sub(r"\1\2", "\n\n".join(pages))


def _edges(lines: list[str]) -> list[str]:
    return lines[:EDGE_LINES] + lines[max(EDGE_LINES, len(lines) - EDGE_LINES) :]


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())
