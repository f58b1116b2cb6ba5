"""Chapters of a PDF without an outline, at the headings its type sets larger (barkserve.books.pdf_headings).

Real books: the corpus (test_corpus.py) holds texlive-base's PDFs without an outline. Here the type-size
headings of real PDFs that do have an outline are checked against that outline (an oracle the producer
wrote), and made PDFs (fpdf2) check the cases where the type shows no chapters.
"""

from __future__ import annotations

import io
import re
from itertools import count
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from barkserve.books import read_book
from barkserve.books.pdf import outline_starts, page_texts, strip_running_lines, type_headings
from barkserve.books.pdf_headings import MAX_HEADING_SHARE
from conftest import unavailable

# Words unlike each other and without digits (a running line is recognised with its digits ignored).
NAMES = ("".join("bcdfghjklm"[int(d)] + "aeiou"[int(d) % 5] for d in str(n)).title() for n in count(10))


def body() -> str:
    """A paragraph of body text, each of its lines unlike any other's (a line recurring at pages' tops or
    feet would be a running head): eight sentences, each with a word of its own."""
    return " ".join(f"The fox {next(NAMES)} jumps over the lazy dog." for _ in range(8))


def found_headings(data: bytes) -> list[tuple[int, str]]:
    """(page, title) of the headings that read_pdf finds by type size, from the same steps it takes."""
    pages, sized = page_texts(data, sizes=True)
    kept = [page.split("\n") for page in strip_running_lines(pages)]
    return [(page, title) for page, _, title in type_headings(kept, sized)]


@pytest.mark.parametrize(
    "path",
    [
        "/usr/share/debian-reference/debian-reference.en.pdf",
        "/usr/share/doc/debian-history/docs/project-history.en.pdf",
        "/usr/share/doc/debian-history/docs/project-history.ja.pdf",
    ],
)
def test_type_size_headings_of_real_pdfs_are_their_outlines_chapters(path: str) -> None:
    """DBLaTeX's PDFs have an outline, so its top-level entries say where the chapters are: the type finds
    each of them on its page, and before them only the front matter's headings the outline leaves out
    (Contents, List of Tables, Preface)."""
    file = Path(path)
    if not file.is_file():
        unavailable(path)
    data = file.read_bytes()
    outline = outline_starts(PdfReader(io.BytesIO(data)))
    found = found_headings(data)
    assert len(outline) >= 5
    assert found[-len(outline) :] == outline
    assert len(found) - len(outline) <= 3
    assert all(page < outline[0][0] for page, _ in found[: -len(outline)])


def make(path: Path, pages: list[list[tuple[float, str]]]) -> bytes:
    """A PDF without an outline: pages of (type size, paragraph)."""
    pdf = FPDF()
    pdf.set_font("Helvetica")
    for page in pages:
        pdf.add_page()
        for size, text in page:
            pdf.set_font_size(size)
            pdf.multi_cell(0, size * 0.42, text, new_x="LMARGIN", new_y="NEXT")  # leading 1.2 x size (mm)
    pdf.output(str(path))
    return path.read_bytes()


def titles(data: bytes) -> list[str]:
    return [c.title for c in read_book(data, "made.pdf").chapters]


def test_headings_set_larger_are_chapters_and_the_title_page_opens(tmp_path: Path) -> None:
    data = make(
        tmp_path / "b.pdf",
        [
            [(24, "A Made Book"), (11, body())],
            [(16, "1 Beginnings"), (11, body()), (13, "1.1 A section"), (11, body())],
            [(16, "Interlude"), (16, "2 Middles"), (11, body())],
            [(11, body()), (16, "3 Ends"), (11, body()), (13, "3.1 Another section"), (11, body())],
        ],
    )
    book = read_book(data, "made.pdf")
    # A heading's lines are joined, but a numbered line starts a heading of its own.
    assert [c.title for c in book.chapters] == ["made.pdf", "1 Beginnings", "Interlude", "2 Middles", "3 Ends"]
    assert book.chapters[4].text.startswith("3 Ends")
    assert "1.1 A section" in book.chapters[1].text and "Another section" in book.chapters[4].text
    words = " ".join(c.text for c in book.chapters).split()
    assert words.count("fox") == 7 * 8  # seven paragraphs: nothing lost, nothing read twice


def test_type_of_one_size_keeps_the_plain_text_headings(tmp_path: Path) -> None:
    """No larger type: as before, "Chapter N" lines of the text, else one chapter."""
    same = [[(11, "Chapter 1"), (11, body())], [(11, "Chapter 2"), (11, body())]]
    assert titles(make(tmp_path / "a.pdf", same)) == ["Chapter 1", "Chapter 2"]
    plain = [[(11, "1 Beginnings"), (11, body())], [(11, "2 Middles"), (11, body())]]
    assert titles(make(tmp_path / "b.pdf", plain)) == ["made.pdf"]


def test_a_heading_on_one_page_only_is_a_title_not_a_chapter(tmp_path: Path) -> None:
    one = [[(20, "The Only Heading"), (11, body())], [(11, body())], [(11, body())]]
    assert titles(make(tmp_path / "b.pdf", one)) == ["made.pdf"]


def test_slides_without_a_body_size_keep_the_plain_text_behaviour(tmp_path: Path) -> None:
    """Slides set each point in its own large size: no size carries the body's share of the text."""
    slides = [
        [(28, f"Slide {next(NAMES)}"), *[(size, f"A point {next(NAMES)} in large type") for size in (24, 20, 16) * 2]]
        for _ in range(8)
    ]
    assert titles(make(tmp_path / "b.pdf", slides)) == ["made.pdf"]


def test_a_heading_size_on_too_many_lines_is_no_chapter_level(tmp_path: Path) -> None:
    """Large type on a line in three of the body's (a glossary's terms): no chapters by type."""
    short = "A short paragraph of body text that is read aloud. " * 2
    lines = round(1 / MAX_HEADING_SHARE)
    pages = [[item for k in range(lines) for item in ((15, f"Term {n}.{k}"), (11, short))] for n in range(4)]
    assert titles(make(tmp_path / "b.pdf", pages)) == ["made.pdf"]


def test_a_page_with_a_character_outside_the_first_plane_keeps_its_sizes() -> None:
    """texlive-base's hyph-utf8 note prints ε-TeX's 𝜀 (U+1D700, two UTF-16 units: PDFium counts it twice)
    on its first page; that page's sizes still line up, so its heading there is found. Headings as
    `pdftotext -layout` prints them: "1 TEX distributions" (larger, on that page only), "1.1 TEX Live",
    "1.2 MiKTEX" (page 3)."""
    path = "/usr/share/doc/texlive-doc/generic/hyph-utf8/hyphenation-distribution.pdf"
    if not Path(path).is_file():
        unavailable(path)
    assert found_headings(Path(path).read_bytes()) == [(0, "1.1 TEX Live"), (2, "1.2 MiKTEX")]


def test_a_real_pdf_without_its_outline_reads_its_chapters_from_its_labels_and_titles(tmp_path: Path) -> None:
    """debian-history's PDF, its outline removed (pypdf): the chapters are the outline's, each from its
    label ("Chapter 3", set large above the title), which is not read at the end of the chapter before."""
    path = Path("/usr/share/doc/debian-history/docs/project-history.en.pdf")
    if not path.is_file():
        unavailable(str(path))
    reader = PdfReader(path)
    outline = [title for _, title in outline_starts(reader)]
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    bare = tmp_path / "bare.pdf"
    writer.write(bare)
    assert not outline_starts(PdfReader(bare))
    chapters = read_book(bare.read_bytes(), "bare.pdf").chapters
    assert [c.title for c in chapters][-len(outline) :] == outline
    for chapter in chapters[-len(outline) :]:
        label, title = chapter.text.split("\n")[:2]
        assert re.fullmatch(r"(?:Chapter \d+|Appendix [A-Z])", label) and title == chapter.title
    assert not [c.title for c in chapters if re.search(r"(?:Chapter \d+|Appendix [A-Z])\s*$", c.text)]
