"""Reading books: EPUB, PDF, HTML, Markdown and text into titled chapters; bad files refused clearly."""

import zipfile
from pathlib import Path

import pytest

from barkserve.books import parse_chapters, read_book
from barkserve.errors import BookTooLarge, InvalidBook, InvalidRequest, ProtectedBook, UnsupportedBook
from bookfiles import CHAPTERS, add_encryption, cover_jpeg, make_blank_pdf, make_epub, make_epub2, make_pdf


def read(path: Path, **kwargs: object) -> object:
    return read_book(path.read_bytes(), path.name, **kwargs)  # type: ignore[arg-type]


def test_epub_chapters_follow_the_spine_with_toc_titles(tmp_path: Path) -> None:
    book = read(make_epub(tmp_path / "b.epub"))
    assert book.title == "Storm Over the Harbour" and book.author == "Ann Writer"
    assert book.cover == cover_jpeg()
    assert [c.title for c in book.chapters] == [name for name, _ in CHAPTERS]
    for chapter, (name, text) in zip(book.chapters, CHAPTERS, strict=True):
        assert chapter.text.split() == f"{name}. {text}".split()  # heading (a sentence), the text, cues intact
    everything = " ".join(c.text for c in book.chapters)
    assert "rights reserved" not in everything  # the copyright page (epub:type) is skipped
    assert "not read" not in everything and "storm.1" not in everything  # the footnote and its marker


def test_epub_documents_outside_the_toc_continue_the_chapter_before(tmp_path: Path) -> None:
    path = make_epub(tmp_path / "b.epub", continuation="The harbour part goes on here.")
    chapters = read(path).chapters
    assert len(chapters) == 3 and chapters[0].text.endswith("The harbour part goes on here.")


def test_epub2_with_ncx_guide_and_cover_meta(tmp_path: Path) -> None:
    book = read(make_epub2(tmp_path / "old.epub"))
    assert (book.title, book.author, book.cover) == ("Old Format", "Bea Author", cover_jpeg())
    # The guide's cover and contents pages are skipped; a file the NCX does not list continues its chapter.
    assert [(c.title, c.text) for c in book.chapters] == [
        ("Part One", "Part One.\nIt began.\nIt went on."),
        ("Part Two", "Part Two.\nIt ended."),
    ]


def test_font_obfuscation_is_not_drm(tmp_path: Path) -> None:
    path = make_epub(tmp_path / "b.epub")
    encryption = (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        '<enc:EncryptionMethod Algorithm="http://www.idpf.org/2008/embedding"/>'
        '<enc:CipherData><enc:CipherReference URI="EPUB/font.otf"/></enc:CipherData></enc:EncryptedData></encryption>'
    )
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("META-INF/encryption.xml", encryption)
    assert len(read(path).chapters) == 3


def test_pdf_outline_gives_chapters_without_running_heads_or_page_numbers(tmp_path: Path) -> None:
    pages = [
        "Chapter One. It was a dark night and the rain came down on the old town.",
        "Chapter Two. The morning was bright and the streets were wet.",
        "Chapter Three. They left the town by the north road.",
    ]
    book = read(make_pdf(tmp_path / "b.pdf", pages))
    assert book.title == "A Printed Book" and book.author == "Pat Printer"
    assert [c.title for c in book.chapters] == ["Chapter One", "Chapter Two", "Chapter Three"]
    for chapter, page in zip(book.chapters, pages, strict=True):
        assert chapter.text.split() == page.split()  # no "A PRINTED BOOK" head, no page number


def test_pdf_without_outline_uses_text_headings(tmp_path: Path) -> None:
    pages = ["Chapter 1\n\nIt was a dark night.", "It went on.", "Chapter 2\n\nThe morning came."]
    book = read(make_pdf(tmp_path / "b.pdf", pages, outline=False))
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    assert " ".join(book.chapters[0].text.split()) == "Chapter 1. It was a dark night. It went on."


def test_markdown_headings_are_chapters_and_a_lone_top_heading_the_title(tmp_path: Path) -> None:
    md = (
        "# The Book\n\n## Chapter 1\n\nIt was **dark**.[^1] [laughs]\n\n"
        "```\n## not a heading\n```\n\n## Chapter 2\n\nMorning.\n\n[^1]: A footnote.\n"
    )
    path = tmp_path / "b.md"
    path.write_text(md, encoding="utf-8")
    book = read(path)
    assert book.title == "The Book"
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2"]
    assert "dark. [laughs]" in book.chapters[0].text and "footnote" not in book.chapters[1].text
    assert "heading" not in book.chapters[0].text  # code is not read aloud, and no chapter break


def test_html_headings_and_note_markers(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Tales</title><style>p{}</style></head><body>"
        "<h2>One</h2><p>First<sup>2</sup> tale, <em>told</em> well.</p>"
        '<h2>Two</h2><p>Second tale<a role="doc-noteref" href="#x">*</a>.</p>'
        '<aside epub:type="footnote"><p>Hidden note.</p></aside><script>var x;</script></body></html>'
    )
    path = tmp_path / "b.html"
    path.write_text(html, encoding="utf-8")
    book = read(path)
    assert book.title == "Tales" and [c.title for c in book.chapters] == ["One", "Two"]
    assert book.chapters[0].text == "One.\nFirst tale, told well."
    assert book.chapters[1].text == "Two.\nSecond tale."


@pytest.mark.parametrize(
    ("text", "titles"),
    [
        (
            "Chapter 1\nA.\n\nCHAPTER TWO\nB.\n\nPart III: The End\nC.",
            ["Chapter 1", "CHAPTER TWO", "Part III: The End"],
        ),
        ("Just a story.\nNo headings here.", ["b"]),
        ("Opening words.\n\nChapter 1\nA.", ["b", "Chapter 1"]),
        ("Prologue\nIt began.\n\nChapter One. It was night.\nStill chapter one? No: a sentence.", ["Prologue"]),
    ],
)
def test_text_chapter_headings(tmp_path: Path, text: str, titles: list) -> None:
    path = tmp_path / "b.txt"
    path.write_text(text, encoding="utf-8")
    book = read(path)
    assert [c.title for c in book.chapters] == titles
    words = "\n".join(c.text for c in book.chapters).split()
    assert [w.rstrip(".") for w in words] == [w.rstrip(".") for w in text.split()]  # nothing lost or repeated
    assert all(c.text.split("\n")[0][-1] == "." for c in book.chapters if c.title != "b")  # headings end a sentence


def corrupt(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:600])
    return path


def rights(path: Path) -> Path:
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("META-INF/rights.xml", "<rights/>")
    return path


def empty_chapter(path: Path) -> Path:
    return make_epub(path, chapters=(*CHAPTERS[:1], ("Blank", ""), *CHAPTERS[2:]))


def test_an_epub_entry_with_no_text_is_merged_into_the_next_chapter_and_said_so(tmp_path: Path) -> None:
    book = read_book(empty_chapter(tmp_path / "b.epub").read_bytes(), "b.epub")
    assert [c.title for c in book.chapters] == [CHAPTERS[0][0], CHAPTERS[2][0]]
    assert any("'Blank'" in note and "next chapter" in note for note in book.skipped)


BAD_BOOKS = [
    ("drm epub", lambda p: add_encryption(make_epub(p / "b.epub")), ProtectedBook, "DRM"),
    ("adobe rights", lambda p: rights(make_epub(p / "b.epub")), ProtectedBook, "DRM"),
    ("corrupt zip", lambda p: corrupt(make_epub(p / "b.epub")), InvalidBook, "damaged"),
    ("not a zip", lambda p: (p / "b.epub").write_bytes(b"hello") and p / "b.epub", InvalidBook, "damaged"),
    ("pdf without text", lambda p: make_blank_pdf(p / "b.pdf"), InvalidBook, "no text layer"),
    ("not a pdf", lambda p: (p / "b.pdf").write_bytes(b"%PDF-1.4 junk") and p / "b.pdf", InvalidBook, "PDF"),
    ("empty text", lambda p: (p / "b.txt").write_text(" \n") and p / "b.txt", InvalidBook, "no text"),
    ("not utf-8", lambda p: (p / "b.md").write_bytes(b"\xff\xfe") and p / "b.md", InvalidRequest, "UTF-8"),
    ("unknown type", lambda p: (p / "b.docx").write_bytes(b"x") and p / "b.docx", UnsupportedBook, ".epub"),
]


@pytest.mark.parametrize(("case", "make", "error", "needle"), BAD_BOOKS, ids=[c[0] for c in BAD_BOOKS])
def test_bad_books_are_refused_clearly(tmp_path: Path, case: str, make: object, error: type, needle: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(error) as caught:
        read(path)
    assert needle in caught.value.message


def test_size_limit(tmp_path: Path) -> None:
    path = make_epub(tmp_path / "b.epub")
    with pytest.raises(BookTooLarge, match="max_book_bytes"):
        read(path, max_bytes=path.stat().st_size - 1)
    assert read(path, max_bytes=path.stat().st_size).title


@pytest.mark.parametrize(
    ("spec", "numbers"), [("3-5", [3, 4, 5]), ("1,4,7-8", [1, 4, 7, 8]), ("2, 2", [2]), (None, None), ("", None)]
)
def test_chapter_ranges(spec: object, numbers: object) -> None:
    assert parse_chapters(spec) == numbers


@pytest.mark.parametrize("spec", ["0", "5-3", "a", "1-", 3])
def test_bad_chapter_ranges(spec: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_chapters(spec)


def test_selecting_chapters_outside_the_book(tmp_path: Path) -> None:
    book = read(make_epub(tmp_path / "b.epub"))
    assert [c.title for c in book.select([3, 1]).chapters] == ["The Harbour", "The Return"]
    with pytest.raises(InvalidRequest, match="chapters 1-3"):
        book.select([4])
