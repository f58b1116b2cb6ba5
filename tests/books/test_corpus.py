"""Real books made by others (tests/books/corpus/README.md): each is planned as a reader shows it (title,
author, language, chapters), and at least 95% of its body text, counted without barkserve's reader, is read.

The files come from Debian documentation packages that `.ci/system-deps.sh` installs, or are made in the
test run by real producers (pandoc, ebookmaker, pdflatex, groff) from text such packages ship
(`corpus_builds.py`; keys `built/<producer>/<file>`); outside CI a missing package or producer skips
its files, under CI=true it fails.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from barkserve.books import Book, read_book
from conftest import unavailable

EXPECTED = json.loads((Path(__file__).parent / "corpus" / "expected.json").read_text(encoding="utf-8"))
WORD_CHAR = re.compile(r"\w")
# Words: runs of word characters, and each Chinese or Japanese character one word (those scripts put no
# spaces between words). Counted as well as the characters, so that words run together (an extractor
# that drops the spaces between them: "DiesesKapitel") fail the check too.
HAN_KANA = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD = re.compile(rf"[{HAN_KANA}]|[^\W{HAN_KANA}]+")
MIN_COVERAGE = 0.95
# A page number line as the corpus PDFs print them: "12 / 248" (spaces removed), "xii" (bare numbers are
# in their tables too).
PAGE_NUMBER = re.compile(r"\d{1,4}/\d{1,4}|[ivxlc]{2,7}")


def corpus_file(path: str, built_book: Callable[[str], Path]) -> Path:
    if path.startswith("built/"):
        return built_book(path)
    file = Path(path)
    if not file.is_file():
        unavailable(path)
    return file


def counts(text: str) -> tuple[int, int]:
    """(words, word characters) of a text."""
    return len(WORD.findall(text)), len(WORD_CHAR.findall(text))


def body_text_epub(file: Path, book: Book) -> str:
    """The text of the EPUB's linear spine documents, by lxml alone, less those the book lists as skipped."""
    archive = zipfile.ZipFile(file)
    container = etree.fromstring(archive.read("META-INF/container.xml"))
    opf_path = next(container.iter("{*}rootfile")).get("full-path")
    opf = etree.fromstring(archive.read(opf_path))
    base = posixpath.dirname(opf_path)
    hrefs = {i.get("id"): i.get("href").split("#")[0] for i in opf.iter("{*}item")}
    guide_toc = {r.get("href").split("#")[0] for r in opf.iter("{*}reference") if r.get("type") == "toc"}
    seen, texts = set(), []
    skipped = " ".join(book.skipped)
    for ref in opf.iter("{*}itemref"):
        href = hrefs.get(ref.get("idref"))
        if ref.get("linear") == "no" or href is None or href in seen or href in guide_toc:
            continue
        seen.add(href)
        path = posixpath.normpath(posixpath.join(base, href))
        if path in skipped or href.endswith("nav.xhtml"):
            continue
        root = etree.fromstring(archive.read(path), etree.XMLParser(recover=True, resolve_entities=False))
        for bad in root.iter("{*}script", "{*}style", "{*}head"):
            bad.getparent().remove(bad)
        texts.append(" ".join(root.itertext()))
    return "\n".join(texts)


def body_text_pdf(file: Path) -> str:
    """The PDF's text by poppler's pdftotext (another extractor than barkserve's PDFium)."""
    if shutil.which("pdftotext") is None:
        unavailable("pdftotext (poppler-utils)")
    return subprocess.run(["pdftotext", str(file), "-"], capture_output=True, check=True).stdout.decode()


def check_no_running_lines(book: Book, head: str) -> None:
    """A PDF's running head (on every page, with or without its page number) is read at most where it is
    also a title; page numbers never."""
    lines = ["".join(line.split()) for chapter in book.chapters for line in chapter.text.splitlines()]
    head = "".join(head.split())
    rest = [line.replace(head, "", 1) for line in lines if head in line]
    running = [r for r in rest if not r or PAGE_NUMBER.fullmatch(r)]
    assert len(running) <= 2, f"the running head {head!r} is read on {len(running)} pages"
    numbers = [line for line in lines if PAGE_NUMBER.fullmatch(line)]
    assert not numbers, f"page numbers are read: {numbers[:5]}"


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=[p.split("/share/")[-1] for p in sorted(EXPECTED)])
def test_a_real_book_reads_as_its_reader_shows_it(path: str, built_book: Callable[[str], Path]) -> None:
    file = corpus_file(path, built_book)
    expected = EXPECTED[path]
    book = read_book(file.read_bytes(), file.name)
    assert (book.title, book.author, book.language) == (expected["title"], expected["author"], expected["language"])
    titles = [c.title for c in book.chapters]
    assert len(titles) == expected["chapters"]
    assert titles[:3] == expected["first"] and titles[-1] == expected["last"]
    if "running_head" in expected:
        check_no_running_lines(book, expected["running_head"])
    planned = counts("\n".join(c.text for c in book.chapters))
    body = counts(body_text_epub(file, book) if file.suffix == ".epub" else body_text_pdf(file))
    assert planned[0] >= MIN_COVERAGE * body[0], f"{planned[0]} of {body[0]} words planned"
    assert planned[1] >= MIN_COVERAGE * body[1], f"{planned[1]} of {body[1]} word characters planned"
