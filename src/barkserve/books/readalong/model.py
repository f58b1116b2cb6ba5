"""What a read-along book is made of: the book, its chapters as read, and its pages before packaging."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from barkserve.books.opf import OPF_NS
from barkserve.books.readalong.text import Document
from barkserve.captions import Cue

EPOCH = "2000-01-01T00:00:00Z"  # dcterms:modified of a made book: the same book, the same bytes


@dataclass(frozen=True)
class ReadAlongChapter:
    """A chapter as read: its title, text, audio (an MP3 file), and captions timed from its start."""

    title: str
    text: str
    audio: Path
    cues: tuple[Cue, ...]


@dataclass(frozen=True)
class ReadAlongBook:
    """The book: its metadata, and the EPUB it was read from (None: a plain EPUB 3 is made)."""

    title: str
    author: str | None = None
    language: str | None = None
    source: bytes | None = None


@dataclass
class Pages:
    """The documents read aloud, the package document, and every other member of the archive."""

    documents: list[Document]
    opf_path: str
    opf: etree._Element
    members: dict[str, bytes]  # path -> bytes, in archive order (the mimetype first), changed ones included
    manifest_ids: dict[str, str]  # document path -> its manifest id
    doctype: str | None = None  # the DOCTYPE the pages read aloud are written with (None: their own)


def book_id(book: ReadAlongBook, chapters: Sequence[ReadAlongChapter]) -> str:
    """A made book's identifier: the same book, the same id."""
    digest = hashlib.sha256("\x00".join([book.title, *(c.text for c in chapters)]).encode()).hexdigest()
    return f"urn:uuid:{uuid.UUID(digest[:32])}"


def part(opf: etree._Element, name: str, index: int) -> etree._Element:
    """The package's `metadata` or `manifest` (in any namespace, as the reader finds it); made when missing."""
    found = opf.find(f"{{*}}{name}")
    if found is None:
        found = etree.Element(f"{{{OPF_NS}}}{name}")
        opf.insert(index, found)
    return found
