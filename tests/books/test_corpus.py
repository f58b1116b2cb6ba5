"""Real books made by others (tests/books/corpus/README.md): each is planned as a reader shows it (title,
author, language, chapters), and at least 95% of its body text, counted without barkserve's reader, is read.

The files come from Debian documentation packages that `.ci/system-deps.sh` installs; outside CI a
missing package skips its files, under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from barkserve.books import Book, read_book

EXPECTED = json.loads((Path(__file__).parent / "corpus" / "expected.json").read_text(encoding="utf-8"))
WORD_CHAR = re.compile(r"\w")
MIN_COVERAGE = 0.95


def corpus_file(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: .ci/system-deps.sh installs the corpus packages")
        pytest.skip(f"{path} is not installed (run .ci/system-deps.sh)")
    return file


def body_chars_epub(file: Path, book: Book) -> int:
    """Word characters of the EPUB's linear spine documents, by lxml alone, less those the book lists as skipped."""
    archive = zipfile.ZipFile(file)
    container = etree.fromstring(archive.read("META-INF/container.xml"))
    opf_path = next(container.iter("{*}rootfile")).get("full-path")
    opf = etree.fromstring(archive.read(opf_path))
    base = posixpath.dirname(opf_path)
    hrefs = {i.get("id"): i.get("href").split("#")[0] for i in opf.iter("{*}item")}
    guide_toc = {r.get("href").split("#")[0] for r in opf.iter("{*}reference") if r.get("type") == "toc"}
    seen, total = set(), 0
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
        total += len(WORD_CHAR.findall(" ".join(root.itertext())))
    return total


def body_chars_pdf(file: Path) -> int:
    """Word characters of the PDF's text by poppler's pdftotext (another extractor than pypdf)."""
    if shutil.which("pdftotext") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdftotext is missing: .ci/system-deps.sh installs poppler-utils")
        pytest.skip("pdftotext is not installed")
    text = subprocess.run(["pdftotext", str(file), "-"], capture_output=True, check=True).stdout.decode()
    return len(WORD_CHAR.findall(text))


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=[p.split("/share/")[-1] for p in sorted(EXPECTED)])
def test_a_real_book_reads_as_its_reader_shows_it(path: str) -> None:
    file = corpus_file(path)
    expected = EXPECTED[path]
    book = read_book(file.read_bytes(), file.name)
    assert (book.title, book.author, book.language) == (expected["title"], expected["author"], expected["language"])
    titles = [c.title for c in book.chapters]
    assert len(titles) == expected["chapters"]
    assert titles[:3] == expected["first"] and titles[-1] == expected["last"]
    planned = sum(len(WORD_CHAR.findall(c.text)) for c in book.chapters)
    body = body_chars_epub(file, book) if file.suffix == ".epub" else body_chars_pdf(file)
    assert planned >= MIN_COVERAGE * body, f"{planned} of {body} word characters planned"
