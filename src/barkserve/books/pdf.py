"""PDF books with a text layer: the file's structure by pypdf, the pages' text by PDFium (pypdfium2).

- Text: PDFium places words by their glyph positions, as a PDF viewer does, so words that a producer
  spaces by moving the pen rather than with a space glyph (DBLaTeX, xdvipdfmx) stay apart; pypdf's
  `extract_text` joined them ("DiesesKapitel") and took about 40 ms a page where PDFium takes 1-2 ms.

- A PDF with no text layer (scanned pages) is refused with how to fix it (OCR it first).
- Chapters: the outline's (bookmarks') top-level entries, each from where its page prints its title
  (or its page's top) to the next one's; without an outline, the headings its type sets larger than
  the body (pdf_headings; its sizes are read only then); where the type shows none, the text's chapter
  headings as in a `.txt` file; else one chapter.
- Running heads and feet: a line among the first or last two of a page that recurs (its page number at
  either end and other digits ignored) on at least half of the pages (and at least 3) is left out; so
  is a page number alone on such a line ("12", "- 12 -", "Page 12 of 300", "xii").
- A word hyphenated across a line break is joined again (PDFium marks such a hyphen U+FFFE).
- Footnotes are kept as they stand in the text layer: a PDF does not mark them.
"""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from typing import Any

from barkserve.books.language import book_language
from barkserve.books.model import Book, Chapter, check_chapters, clean_title
from barkserve.books.pdf_headings import Heading, Line, find_headings, line_sizes
from barkserve.books.plain import read_txt
from barkserve.errors import BookTooLarge, InvalidBook, ProtectedBook

EDGE_LINES = 2
PAGE_NUMBER = re.compile(r"[\W_]*(?:page\s+)?(?:\d{1,5}|[ivxlcdm]{1,8})(?:\s+of\s+\d{1,5})?[\W_]*", re.IGNORECASE)
# A page number at a running line's start or end: "12", "12 / 248", "page 3 of 9", a roman "xii".
ROMAN = r"m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})"
PAGE_TOKEN = rf"(?:page\s+)?(?:\d{{1,5}}(?:\s*(?:/|of)\s*\d{{1,5}})?|(?=[ivxlcdm]){ROMAN})"
RUNNING_NUMBER = re.compile(rf"^{PAGE_TOKEN}\s+|\s+{PAGE_TOKEN}$")
HYPHENATED = re.compile(r"([a-z])-\n([a-z])")
# PDFium's mark for a hyphen at a line's end whose line break it has removed.
LINE_END_HYPHEN = "\ufffe"
# Bounds on the work a PDF can ask for: pypdf reads text at a few hundred KB of page content a second,
# and a small file can hold many pages, or pages sharing one stream that unpacks to tens of MB.
MAX_PAGES = 10_000
# An outline entry whose title is printed among its page's first lines starts at the page's top.
TITLE_TOP_LINES = 3
MAX_CONTENT_BYTES = 16 * 1024 * 1024
# PDFium is not thread-safe (pypdfium2's documentation): the server's threads read PDFs one at a time.
PDFIUM = threading.Lock()


def read_pdf(data: bytes, name: str) -> Book:
    """The chapters, title and author of a PDF file's bytes."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ProtectedBook(f"{name} is encrypted with a password; use an unprotected copy")
        check_content(reader, name)
        starts = outline_starts(reader)
        pages, sized = page_texts(data, sizes=not starts)
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
    lines = [page.split("\n") for page in pages]
    if starts:
        bounds = chapter_bounds(lines, starts)
    else:
        headings = type_headings(lines, sized)
        if not headings:
            found = read_txt(join_pages(pages), title)
            return Book(title, author, None, found.chapters, language)
        bounds = [((page, line), heading) for page, line, heading in headings]
    ends = [*(b for b, _ in bounds[1:]), (len(pages), 0)]
    chapters = [
        Chapter(clean_title(heading, f"Chapter {k + 1}"), text_between(lines, start, end))
        for k, ((start, heading), end) in enumerate(zip(bounds, ends, strict=True))
    ]
    opening = text_between(lines, (0, 0), bounds[0][0])
    if opening.strip():
        chapters.insert(0, Chapter(title, opening))
    return Book(title, author, None, check_chapters(chapters, name), language)


def declared_language(reader: Any) -> str | None:
    """The document catalog's /Lang ("de-DE"), if any."""
    try:
        lang = reader.trailer["/Root"].get("/Lang")
    except Exception:  # a damaged catalog: the language is detected from the text instead
        return None
    return str(lang) if lang else None


def check_content(reader: Any, name: str) -> None:
    """BookTooLarge past MAX_PAGES pages or MAX_CONTENT_BYTES of (unpacked) page content in all."""
    count = len(reader.pages)
    if count > MAX_PAGES:
        raise BookTooLarge(f"{name} has {count:,} pages; PDFs are read up to {MAX_PAGES:,} pages")
    content = 0
    for number, page in enumerate(reader.pages, 1):
        stream = page.get_contents()
        content += len(stream.get_data()) if stream is not None else 0
        if content > MAX_CONTENT_BYTES:
            raise BookTooLarge(
                f"{name} has over {MAX_CONTENT_BYTES:,} bytes of page content (by page {number}); "
                "split the book into smaller PDFs"
            )


def page_texts(data: bytes, sizes: bool = False) -> tuple[list[str], list[list[Line]]]:
    """Each page's text by PDFium, lines ending in "\\n"; with `sizes`, each page's (non-blank line, type
    size) as well (else [] a page)."""
    import pypdfium2

    texts = []
    sized = []
    with PDFIUM:
        document = pypdfium2.PdfDocument(data)
        try:
            for page in document:
                textpage = page.get_textpage()
                text = textpage.get_text_range()
                texts.append(text)
                sized.append(line_sizes(textpage, text) if sizes else [])
                textpage.close()
                page.close()
        finally:
            document.close()
    clean = [t.replace("\r\n", "\n").replace("\r", "\n").replace(LINE_END_HYPHEN, "") for t in texts]
    return clean, [[(line.replace(LINE_END_HYPHEN, ""), size, y) for line, size, y in page] for page in sized]


def type_headings(lines: list[list[str]], sized: list[list[Line]]) -> list[Heading]:
    """The chapter headings that the type of pages (their lines as strip_running_lines kept them) shows."""
    return find_headings([aligned(page, kept) for page, kept in zip(sized, lines, strict=True)])


def aligned(sized: list[Line], kept: list[str]) -> list[Line]:
    """The sizes of a page's lines that strip_running_lines kept (a subsequence of its non-blank lines);
    0 (unknown) for a line not found."""
    out = []
    i = 0
    for line in kept:
        j = i
        while j < len(sized) and sized[j][0] != line:
            j += 1
        if j < len(sized):
            out.append(sized[j])
            i = j + 1
        else:
            out.append((line, 0.0, 0.0))
    return out


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
    return sorted(dict.fromkeys(starts), key=lambda start: start[0])  # outline order within a page


def chapter_bounds(pages: list[list[str]], starts: list[tuple[int, str]]) -> list[tuple[tuple[int, int], str]]:
    """((page, line), title) where each outline entry's text starts.

    An entry starts at the line that prints its title, or at its page's top when that line is among the
    page's first TITLE_TOP_LINES (a chapter's label, "Chapter 3", is printed above its title) or not
    found. A later entry on the same page whose title is not found is left out: its text stays with
    the entry before.
    """
    bounds: list[tuple[tuple[int, int], str]] = []
    for page, title in starts:
        after = bounds[-1][0][1] + 1 if bounds and bounds[-1][0][0] == page else 0
        found = title_line(pages[page], title, after)
        if found is None and after:
            continue
        line = 0 if found is None or found < TITLE_TOP_LINES else found
        bounds.append(((page, max(line, after)), title))
    return bounds


def title_line(lines: list[str], title: str, start: int) -> int | None:
    """The first line from `start` that prints `title` (spaces and case ignored; a title may wrap once)."""
    key = _squeezed(title)
    if not key:
        return None
    for i in range(start, len(lines)):
        following = _squeezed(lines[i + 1]) if i + 1 < len(lines) else ""
        if key in _squeezed(lines[i]) + following and key not in following:
            return i
    return None


def text_between(pages: list[list[str]], start: tuple[int, int], end: tuple[int, int]) -> str:
    """The text from (page, line) `start` up to (page, line) `end`."""
    (first, line), (last, stop) = start, end
    if first == last:
        return "\n".join(pages[first][line:stop])
    middle = ["\n".join(page) for page in pages[first + 1 : last]]
    tail = ["\n".join(pages[last][:stop])] if last < len(pages) else []
    return join_pages(["\n".join(pages[first][line:]), *middle, *tail])


def _squeezed(text: str) -> str:
    return "".join(text.split()).casefold()


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
    """A line as it recurs from page to page: its page number (at either end, "12 / 248", "xii") left out,
    other digits as "#"."""
    text = RUNNING_NUMBER.sub("", " ".join(line.split()).lower())
    return re.sub(r"\d+", "#", text)
