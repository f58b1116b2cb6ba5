"""Sentences found and wrapped in real-world markup by `write_readalong` itself, without a model: the
pages' text stays the same to the character, each span holds its sentence, what cannot be spanned is
marked at its paragraph, and text that is not in the book is said."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from lxml import etree
from readalong_check import check_clips_match_captions, check_original_kept, epubcheck_errors, read_overlays

from barkserve.audio.encode import FORMATS, encode
from barkserve.books import read_book
from barkserve.books.readalong import ReadAlongBook, ReadAlongChapter, write_readalong
from barkserve.captions import Cue
from barkserve.captions.source import caption_text
from barkserve.text import split_sentences

PAGE = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="en" xml:lang="en">
<head><title>One</title></head>
<body>
<section epub:type="chapter" id="one">
<h1>The <em>First</em> Day</h1>
<!-- a comment between blocks -->
<p>It began with <a href="https://example.org/">a <strong>letter</strong></a> from home. Nobody
   read it twice.<sup><a epub:type="noteref" href="#n1">1</a></sup> Then <em>she</em> left &#8212; quietly.</p>
<p>A sentence <em>ends in here. And</em> the next one goes on.</p>
<p>Hyphen&#173;ated words, <span class="sc">small caps</span>, and a<br/>line break stay.</p>
<aside epub:type="footnote" id="n1"><p>A note that is not read.</p></aside>
</section>
</body>
</html>
"""


def make_book(path: Path, page: str = PAGE, metadata: bool = True) -> Path:
    """A small EPUB 3 written by hand: one page, a nav, a package (without `<metadata>` if not `metadata`)."""
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:uuid:1b6f3c1e-1111-4a2b-'
        "9c3d-123456789abc</dc:identifier><dc:title>Markup</dc:title><dc:language>en</dc:language>"
        '<meta property="dcterms:modified">2026-01-01T00:00:00Z</meta></metadata><manifest>'
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        '<item id="one" href="one.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="one"/></spine></package>'
    )
    if not metadata:
        opf = opf[: opf.index("<metadata")] + opf[opf.index("</metadata>") + len("</metadata>") :]
    nav = (
        '<?xml version="1.0" encoding="utf-8"?><!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>Contents</title></head><body>'
        '<nav epub:type="toc"><ol><li><a href="one.xhtml">The First Day</a></li></ol></nav></body></html>'
    )
    container = (
        '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        archive.writestr("META-INF/container.xml", container)
        archive.writestr("OEBPS/content.opf", opf)
        archive.writestr("OEBPS/nav.xhtml", nav)
        archive.writestr("OEBPS/one.xhtml", page)
    return path


def captions_of(text: str, extra: str = "") -> tuple[Cue, ...]:
    """Sentence captions of a chapter's text, 0.25 s each (as the captions code splits it), and `extra`."""
    sentences = [t for s in split_sentences(text + extra, "en") if (t := caption_text(s))]
    return tuple(Cue(k / 4, (k + 1) / 4, s) for k, s in enumerate(sentences))


def readalong(tmp_path: Path, epub: Path, extra: str = "") -> tuple[bytes, list[str], dict[int, list[Cue]]]:
    book = read_book(epub.read_bytes(), epub.name)
    audio = tmp_path / "chapter.mp3"
    audio.write_bytes(encode(np.zeros(24_000 * 4, np.float32), 24_000, FORMATS["mp3"]))
    chapters = [ReadAlongChapter(c.title, c.text, audio, captions_of(c.text, extra)) for c in book.chapters]
    out = io.BytesIO()
    warnings = write_readalong(out, ReadAlongBook(book.title, source=book.source), chapters)
    return out.getvalue(), warnings, {k: list(c.cues) for k, c in enumerate(chapters)}


def test_sentences_in_nested_inline_markup_are_wrapped_and_the_text_is_unchanged(tmp_path: Path) -> None:
    epub = make_book(tmp_path / "b.epub")
    data, warnings, captions = readalong(tmp_path, epub)
    clips, members = read_overlays(data)
    # One paragraph falls back: "ends in here." ends inside <em>.
    assert check_clips_match_captions(clips, captions) == 1
    assert warnings == [
        "OEBPS/one.xhtml: 1 paragraph(s) are highlighted whole: their sentences cross inline markup "
        "(or paragraphs) in ways a <span> cannot wrap"
    ]
    assert check_original_kept(epub.read_bytes(), members) == 1
    shown = ["".join(c.element.itertext()) for c in clips]
    assert shown == [
        "The First Day",
        "It began with a letter from home.",
        "Nobody",  # the reader breaks the line where the page does
        "read it twice.",
        "Then she left \u2014 quietly.",
        "A sentence ends in here. And the next one goes on.",
        "Hyphen\u00adated words, small caps, and a",  # <br/> ends a line for the reader
        "line break stay.",
    ]
    page = etree.fromstring(members["OEBPS/one.xhtml"])
    # The markup inside a sentence is the same elements, in the span.
    span = page.find(".//{*}span[@id='bs-ra-2']")
    assert span is not None and [e.tag.split("}")[1] for e in span.iter()] == ["span", "a", "strong"]
    out = tmp_path / "out.epub"
    out.write_bytes(data)
    assert epubcheck_errors(out) == set()


def test_captions_that_are_not_in_the_book_are_said(tmp_path: Path) -> None:
    data, warnings, _captions = readalong(tmp_path, make_book(tmp_path / "b.epub"), extra=" Zebras xylophone quietly.")
    assert "1 caption(s) were not found in the book's text; they have no highlight" in warnings
    clips, _ = read_overlays(data)
    assert all("Zebras" not in "".join(c.element.itertext()) for c in clips)


def test_text_the_reader_leaves_out_is_skipped_however_long(tmp_path: Path) -> None:
    # A footnote of 6,000 characters between two paragraphs: not read, so not in the captions.
    note = '<aside epub:type="footnote" id="n2"><p>' + "Not read at all. " * 350 + "</p></aside>"
    page = PAGE.replace("<p>A sentence", f"{note}<p>A sentence")
    data, warnings, captions = readalong(tmp_path, make_book(tmp_path / "b.epub", page))
    assert not any("not found" in w for w in warnings)
    clips, _ = read_overlays(data)
    assert check_clips_match_captions(clips, captions) == 1
    assert all("Not read" not in "".join(c.element.itertext()) for c in clips)


def test_a_package_without_metadata_gets_the_overlays_metadata(tmp_path: Path) -> None:
    data, _, captions = readalong(tmp_path, make_book(tmp_path / "b.epub", metadata=False))
    clips, _ = read_overlays(data)  # the durations and the active class are there
    assert check_clips_match_captions(clips, captions) == 1


@pytest.mark.parametrize(
    "body",
    [
        "<p>Plain <b>bold <i>and italic</i></b> text. Second <i>one</i>.</p>",
        "<div>Text in a div <p>then a paragraph.</p> and a tail.</div>",
        "<ul><li>First item</li><li>Second item. With two sentences.</li></ul>",
        "<p><span>Wrapped <span>twice</span></span> already. <a href='#x' id='x'>Anchor</a> here.</p>",
        "<table><tr><td>A cell.</td><td>Another cell.</td></tr></table>",
        "<pre>code line one\ncode line two</pre><p>After code.</p>",
        # The heading's added full stop, and the same words after a full stop further on.
        "<h2>Thiemo Seufer</h2><p>Thiemo Seufer was here.</p><p>It was MIPS. Thiemo Seufer said so.</p>",
    ],
)
def test_any_markup_keeps_its_text(tmp_path: Path, body: str) -> None:
    page = PAGE.replace(PAGE[PAGE.index("<section") : PAGE.index("</body>")], f"<section>{body}</section>\n")
    epub = make_book(tmp_path / "b.epub", page)
    data, warnings, captions = readalong(tmp_path, epub)
    clips, members = read_overlays(data)
    check_clips_match_captions(clips, captions)
    assert check_original_kept(epub.read_bytes(), members) == 1
    assert not [w for w in warnings if "not found" in w or "not in the book" in w]
