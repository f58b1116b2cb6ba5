"""Chapter headings of a PDF without an outline, found by their type size (PDFium's per-character font size).

LaTeX without hyperref, groff, Distiller and many other producers write no outline (bookmarks), but set
a chapter's or section's heading in a larger type than the body. The body size is the size most of the
text is set in (weighted by characters); a heading is a short line (or up to HEADING_LINES consecutive
lines) clearly larger than that (MIN_RATIO); the chapters are the headings of the largest such size that
occurs at least twice (a size used once is the title). When most headings of that size are numbered
("1 Overview", "2. Changes"), lines of that size before the first numbered one (a title page's author and
date) are not headings. Documents that are not set that way keep the plain-text behaviour: no clear body
size (slides, every line large), or headings over MAX_HEADING_SHARE of the lines or past MAX_HEADINGS.

Sizes are sampled (SAMPLES characters a line, their median), so a page costs about a hundred PDFium
calls, not one per character.
"""

from __future__ import annotations

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

# (page, line index among the page's non-blank lines, the heading's text)
Heading = tuple[int, int, str]


def line_sizes(textpage: Any, text: str) -> list[tuple[str, float]]:
    """(line, type size) of each non-blank line of a page's text as `get_text_range` gave it; size 0: unknown.

    A character's size is its font size scaled by its text matrix (producers such as Distiller set text
    at size 1 scaled by the matrix). Characters are addressed by their index in the text, which PDFium
    keeps one to one with its characters; where it does not (the lengths differ), the sizes are unknown.
    """
    import pypdfium2.raw as raw

    known = len(text) == textpage.count_chars()
    matrix = raw.FS_MATRIX()
    out = []
    for match in LINE.finditer(text):
        line = match.group()
        if not line.strip():
            continue
        samples = []
        if known:
            step = max(1, len(line) // SAMPLES)
            picks = [i for i in range(0, len(line), step) if not line[i].isspace()][:SAMPLES]
            for i in picks:
                size = raw.FPDFText_GetFontSize(textpage, match.start() + i)
                if raw.FPDFText_GetMatrix(textpage, match.start() + i, matrix):
                    size *= abs(matrix.a * matrix.d - matrix.b * matrix.c) ** 0.5
                samples.append(round(size, 1))
        out.append((line, statistics.median(samples) if samples else 0.0))
    return out


def find_headings(pages: list[list[tuple[str, float]]]) -> list[Heading]:
    """The chapter headings of pages of (non-blank line, size); [] where the type does not show them."""
    weight: Counter[float] = Counter()
    for page in pages:
        for line, size in page:
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
    lines = sum(len(page) for page in pages)
    for size in sorted(by_size, reverse=True):
        if by_size[size] < 2:
            continue  # a title
        if by_size[size] > MAX_HEADINGS or by_size[size] > MAX_HEADING_SHARE * lines:
            return []
        level = [(page, line, title) for page, line, title, s in blocks if s == size]
        return without_front_matter(level)
    return []


def heading_blocks(pages: list[list[tuple[str, float]]], body: float) -> list[tuple[int, int, str, float]]:
    """(page, first line, text, size) of each run of up to HEADING_LINES short lines in one size clearly
    larger than the body's."""
    blocks = []
    for number, page in enumerate(pages):
        i = 0
        while i < len(page):
            size = page[i][1]
            if not is_heading_line(page[i][0], size, body):
                i += 1
                continue
            j = i + 1
            while j < len(page) and page[j][1] == size and is_heading_line(page[j][0], size, body):
                j += 1
            if j - i <= HEADING_LINES:
                blocks.append((number, i, " ".join(line.strip() for line, _ in page[i:j]), size))
            i = j
    return blocks


def is_heading_line(line: str, size: float, body: float) -> bool:
    text = line.strip()
    return size >= MIN_RATIO * body and len(text) <= MAX_HEADING_CHARS and bool(WORD.search(text))


def without_front_matter(level: list[Heading]) -> list[Heading]:
    """The headings less those before the first numbered one, when most of them are numbered."""
    numbered = [i for i, (_, _, title) in enumerate(level) if NUMBERED.match(title)]
    if len(numbered) >= 2 and 2 * len(numbered) >= len(level):
        return level[numbered[0] :]
    return level
