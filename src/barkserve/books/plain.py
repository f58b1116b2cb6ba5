"""Plain text, Markdown and HTML books: chapters start at headings.

- `.txt`: a line on its own after a blank line (or at the start) that reads like a chapter heading
  ("Chapter 1", "CHAPTER ONE", "Part II", "Book 3: The Return", "Prologue", "Epilogue") starts a
  chapter; with none the whole text is one chapter.
- `.md` and `.html`: headings start chapters, at the highest level that occurs more than once; a
  single top heading above them is the book's title. Markdown footnotes (`[^1]` and their definitions)
  are left out.

A chapter's text starts with its heading, so the heading is read aloud as well as marked; a heading
without closing punctuation gets a full stop, so it is read (and captioned) as a sentence of its own.
"""

from __future__ import annotations

import re
from collections import Counter

from barkserve.books.html import html_lines
from barkserve.books.model import Book, Chapter, as_sentence, check_chapter_count, check_chapters, clean_title
from barkserve.text import markdown_to_text

NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last"
)
TXT_HEADING = re.compile(
    rf"(?:(?:chapter|part|book|section)\s+(?:\d+|[ivxlcdm]+|(?:{NUMBER_WORDS})(?:[- ](?:{NUMBER_WORDS}))?)\b"
    r"(?:\s*[.:—–-]\s*[^.!?\s][^.!?]{0,80}|\s*\.?)|prologue|epilogue|introduction|preface|foreword|afterword)\s*",
    re.IGNORECASE,
)
MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
MD_FOOTNOTE_DEF = re.compile(r"^\s{0,3}\[\^[^\]]+\]:.*$")
MD_FOOTNOTE_REF = re.compile(r"\[\^[^\]]+\]")
Line = tuple[int | None, str]  # (heading level or None, text)


def read_txt(text: str, name: str) -> Book:
    """Chapters at heading-like lines; one chapter when there is none."""
    lines = text.splitlines()
    starts = [
        i
        for i, line in enumerate(lines)
        if (i == 0 or not lines[i - 1].strip()) and len(line) <= 100 and TXT_HEADING.fullmatch(line.strip())
    ]
    check_chapter_count(len(starts), name)
    chapters: list[Chapter] = []
    if not starts or any(s.strip() for s in lines[: starts[0]]):
        head = lines[: starts[0]] if starts else lines
        chapters.append(Chapter(clean_title(name, "Text"), "\n".join(head)))
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        text = "\n".join([as_sentence(lines[start]), *lines[start + 1 : end]])
        chapters.append(Chapter(clean_title(lines[start], f"Chapter {k + 1}"), text))
    return Book(clean_title(name, "Untitled"), None, None, check_chapters(chapters, name))


def read_markdown(text: str, name: str) -> Book:
    """Chapters at Markdown headings (ATX `#`, outside code fences), markup dropped."""
    lines: list[Line] = []
    fenced = False
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            lines.append((None, raw))
            continue
        match = None if fenced else MD_HEADING.match(raw)
        if match:
            lines.append((len(match.group(1)), match.group(2)))
        elif not MD_FOOTNOTE_DEF.match(raw):
            lines.append((None, MD_FOOTNOTE_REF.sub("", raw)))
    title, chapters = split_at_headings(lines, name)
    chapters = [Chapter(c.title, markdown_to_text(c.text)) for c in chapters]
    return Book(clean_title(title or name, "Untitled"), None, None, check_chapters(chapters, name))


def read_html(data: bytes, name: str) -> Book:
    """Chapters at HTML headings; footnote markers and notes, scripts, styles and navigation left out."""
    lines, doc_title = html_lines(data)
    title, chapters = split_at_headings(lines, doc_title or name)
    return Book(clean_title(title or doc_title or name, "Untitled"), None, None, check_chapters(chapters, name))


def split_at_headings(lines: list[Line], fallback_title: str) -> tuple[str | None, list[Chapter]]:
    """The book title (a lone top heading above the chapter level, if any) and the chapters."""
    levels = [level for level, _ in lines if level is not None]
    if not levels:
        return None, [Chapter(clean_title(fallback_title, "Text"), "\n".join(t for _, t in lines))]
    counts = Counter(levels)
    top = min(levels)
    book_title, level = None, top
    deeper = [lv for lv in levels if lv > top]
    if counts[top] == 1 and deeper:
        level = min(deeper)
        book_title = next(t for lv, t in lines if lv == top)
    check_chapter_count(sum(n for lv, n in counts.items() if lv <= level), fallback_title)
    chapters: list[Chapter] = []
    title: str | None = None
    body: list[str] = []
    for lv, text in lines:
        if lv == top and text == book_title:
            continue
        if lv is not None and lv <= level:
            if title is not None or any(b.strip() for b in body):
                chapters.append(Chapter(clean_title(title or book_title or fallback_title, "Opening"), "\n".join(body)))
            title, body = text, [as_sentence(text)]
        else:
            body.append(text if lv is None else as_sentence(text))
    chapters.append(Chapter(clean_title(title or fallback_title, "Text"), "\n".join(body)))
    return book_title, chapters
