"""Chapter headings of a PDF without an outline, found by their type size (PDFium's per-character font size).

LaTeX without hyperref, groff, Distiller and many other producers write no outline (bookmarks), but set
a chapter's or section's heading in a larger type than the body:

- The body size is the size most of the text is set in (weighted by characters); it must carry at least
  MIN_BODY_SHARE of them (slides, every line large: no headings).
- A heading is a short line clearly larger than the body (MIN_RATIO), or up to HEADING_LINES such lines
  in one size, each closer than MAX_LINE_GAP to the one before (a wrapped heading); a numbered line
  ("2 Changes", "3.") starts a heading of its own.
- The chapters are the headings of the largest such size that is found on two pages at least (a size on
  one page only is the title's). When most of them are numbered, those before the first numbered one on
  a page with a larger heading (a title page's author and date) are left out. Where most of them have a
  label set large on the line above ("Chapter 3", "Kapitel 3"), a chapter starts at its label.
- A level with over MAX_HEADINGS headings, or headings on over MAX_HEADING_SHARE of the lines, is no
  chapter level: the book keeps the plain-text behaviour.

Sizes are sampled (SAMPLES characters a line, their median), so a page costs about a hundred PDFium calls
rather than one a character.
"""

from __future__ import annotations

import ctypes
import re
import statistics
from collections import Counter
from typing import Any

# A line's size: the median of this many of its characters' sizes (PDFium calls per line stay bounded).
SAMPLES = 5
# A heading is at least this much larger than the body's size (LaTeX: \section 14.4 pt on 10 to 12 pt).
MIN_RATIO = 1.15
# A heading is short: at most this many characters a line, and this many lines.
MAX_HEADING_CHARS = 100
HEADING_LINES = 3
# The body size must carry at least this share of the characters, or there is no body to tell headings from.
MIN_BODY_SHARE = 0.4
# A heading level with more headings than this, or over this share of the lines, is not one of chapters.
MAX_HEADINGS = 300
MAX_HEADING_SHARE = 0.2
NUMBERED = re.compile(r"(?:\d{1,3}(?:\.\d{1,3})*\.?|[A-Z]\.|[IVXLC]{1,6}\.)\s+\w")
WORD = re.compile(r"\w")
# A line as str.splitlines() splits them.
LINE = re.compile(r"[^\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")

# A wrapped heading's lines are closer than this many times its size (one heading after another is farther).
MAX_LINE_GAP = 1.6

# (page, line index among the page's non-blank lines, the heading's text)
Heading = tuple[int, int, str]
# (a page's non-blank line, its type size, its baseline's height on the page)
Line = tuple[str, float, float]


def line_sizes(textpage: Any, text: str) -> list[Line]:
    """(line, type size, baseline) of each non-blank line of a page's text as `get_text_range` gave it;
    size 0: unknown.

    A character's size is its font size scaled by its text matrix (producers such as Distiller set text
    at size 1 scaled by the matrix). The text's characters are PDFium's one to one, but for characters
    PDFium cannot map to Unicode, which the text leaves out: where the lengths differ, `char_indexes`
    finds which are left out.
    """
    import pypdfium2.raw as raw

    count = textpage.count_chars()
    index = utf16_indexes(text) if len(text.encode("utf-16-le")) // 2 == count else char_indexes(textpage, text, count)
    matrix = raw.FS_MATRIX()
    x, y = ctypes.c_double(), ctypes.c_double()
    out = []
    for match in LINE.finditer(text):
        line = match.group()
        if not line.strip():
            continue
        samples = []
        y.value = 0.0
        if index:
            step = max(1, len(line) // SAMPLES)
            picks = [i for i in range(0, len(line), step) if not line[i].isspace()][:SAMPLES]
            for i in picks:
                char = index[match.start() + i]
                size = raw.FPDFText_GetFontSize(textpage, char)
                if raw.FPDFText_GetMatrix(textpage, char, matrix):
                    size *= abs(matrix.a * matrix.d - matrix.b * matrix.c) ** 0.5
                samples.append(round(size, 1))
            if picks:
                raw.FPDFText_GetCharOrigin(textpage, index[match.start() + picks[0]], x, y)
        out.append((line, statistics.median(samples) if samples else 0.0, y.value))
    return out


def utf16_indexes(text: str) -> list[int]:
    """Each character's index among PDFium's, which counts a character outside Unicode's first plane
    (a math letter, an emoji) twice, as UTF-16 does."""
    index = []
    unit = 0
    for letter in text:
        index.append(unit)
        unit += 2 if ord(letter) > 0xFFFF else 1
    return index


def char_indexes(textpage: Any, text: str, count: int) -> list[int]:
    """PDFium's character index of each character of the page's text; [] where they do not line up.

    One call a character, so only for pages whose text leaves characters out (unmapped glyphs, U+0002,
    except at a line's end, where the text has the hyphen mark U+FFFE).
    """
    import pypdfium2.raw as raw

    index = []
    char = 0
    for letter in text:
        first = letter.encode("utf-16-le")[:2].decode("utf-16-le", "surrogatepass")
        while char < count and chr(raw.FPDFText_GetUnicode(textpage, char) or 0xFFFD) != first and letter != "\ufffe":
            char += 1
        if char >= count:
            return []
        index.append(char)
        char += 2 if ord(letter) > 0xFFFF else 1
    return index


def find_headings(pages: list[list[Line]]) -> list[Heading]:
    """The chapter headings of pages of lines; [] where the type does not show them."""
    weight: Counter[float] = Counter()
    for lines in pages:
        for line, size, _ in lines:
            if size > 0:
                weight[size] += len(line.strip())
    total = sum(weight.values())
    if not total:
        return []
    body, body_chars = weight.most_common(1)[0]
    if body_chars < MIN_BODY_SHARE * total:
        return []
    blocks = heading_blocks(pages, body)
    by_size = Counter(size for _, _, _, size in blocks)
    pages_of: dict[float, set[int]] = {}
    for number, _, _, size in blocks:
        pages_of.setdefault(size, set()).add(number)
    count = sum(len(lines) for lines in pages)
    for size in sorted(by_size, reverse=True):
        if len(pages_of[size]) < 2:
            continue  # a title, even set in several blocks, is on one page
        if by_size[size] > MAX_HEADINGS or by_size[size] > MAX_HEADING_SHARE * count:
            return []
        level = [(page, line, title) for page, line, title, s in blocks if s == size]
        title_pages = {page for page, _, _, s in blocks if s > size}
        return with_labels(without_front_matter(level, title_pages), pages, body, size)
    return []


def heading_blocks(pages: list[list[Line]], body: float) -> list[tuple[int, int, str, float]]:
    """(page, first line, text, size) of each run of up to HEADING_LINES short lines in one size clearly
    larger than the body's, each closer than MAX_LINE_GAP to the one before; a numbered line starts a run."""
    blocks = []
    for number, page in enumerate(pages):
        i = 0
        while i < len(page):
            size = page[i][1]
            if not is_heading_line(page[i][0], size, body):
                i += 1
                continue
            j = i + 1
            while (
                j < len(page)
                and page[j][1] == size
                and is_heading_line(page[j][0], size, body)
                and abs(page[j][2] - page[j - 1][2]) < MAX_LINE_GAP * size
                and not NUMBERED.match(page[j][0].strip())
            ):
                j += 1
            if j - i <= HEADING_LINES:
                blocks.append((number, i, " ".join(line.strip() for line, _, _ in page[i:j]), size))
            i = j
    return blocks


def with_labels(level: list[Heading], pages: list[list[Line]], body: float, size: float) -> list[Heading]:
    """The headings, each starting at its label ("Chapter 3", "Kapitel 3", set large above the title) where
    the chapters have one: a size larger than the body's, other than the headings', on the line directly
    above at least half of them (and two)."""
    above: Counter[float] = Counter()
    for page, line, _ in level:
        if line > 0:
            above[pages[page][line - 1][1]] += 1
    labels = {s for s, n in above.items() if n >= 2 and 2 * n >= len(level) and s >= MIN_RATIO * body and s != size}
    return [
        (page, line - 1 if line > 0 and pages[page][line - 1][1] in labels else line, title)
        for page, line, title in level
    ]


def is_heading_line(line: str, size: float, body: float) -> bool:
    text = line.strip()
    return size >= MIN_RATIO * body and len(text) <= MAX_HEADING_CHARS and bool(WORD.search(text))


def without_front_matter(level: list[Heading], title_pages: set[int]) -> list[Heading]:
    """The headings less those before the first numbered one on a page with a larger heading (a title
    page's author and date), when most of them are numbered."""
    numbered = [i for i, (_, _, title) in enumerate(level) if NUMBERED.match(title)]
    if len(numbered) >= 2 and 2 * len(numbered) >= len(level):
        first = numbered[0]
        return [h for i, h in enumerate(level) if i >= first or h[0] not in title_pages]
    return level
