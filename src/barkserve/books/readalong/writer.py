"""A read-along EPUB 3: the book's pages, each chapter's audio, and a Media Overlay (SMIL) per page.

From an EPUB, the book is the original: every member is copied as it is except the package document
(which gains the overlays' manifest items, `media-overlay` attributes and `media:` metadata) and the
pages read aloud (which gain the `<span id>` around each sentence, their text unchanged). An EPUB 2 is
upgraded: the package says version 3.0 and gains a navigation document (from its table of contents) and
`dcterms:modified`; its pages keep their markup. Any other book becomes a plain EPUB 3, a page per chapter.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Sequence
from typing import BinaryIO
from urllib.parse import quote

from lxml import etree

from barkserve.books.opf import OPF_NS, OPS_NS
from barkserve.books.readalong.model import Pages, ReadAlongBook, ReadAlongChapter, part
from barkserve.books.readalong.source import made_pages, source_pages
from barkserve.books.readalong.text import Marked, Par, Stream, Unit, anchor, compact, mark, match

SMIL_NS = "http://www.w3.org/ns/SMIL"
ACTIVE_CLASS = "-epub-media-overlay-active"
FOLDER = "readalong"  # beside the package document: the overlays and the chapters' audio


def write_readalong(
    out: BinaryIO, book: ReadAlongBook, chapters: Sequence[ReadAlongChapter], words: bool = False
) -> list[str]:
    """Write the read-along EPUB 3 to `out`: a `<par>` per caption (per word with `words`, where the
    captions have word times).

    Returns:
        Warnings: paragraphs highlighted whole, captions not found in the book's text.
    """
    pages, warnings = source_pages(book.source) if book.source is not None else made_pages(book, chapters)
    stream = Stream.of(pages.documents)
    units, missing = _units(stream, chapters, words)
    marked = mark(pages.documents, stream, units)
    _package(out, pages, chapters, marked)
    return [*warnings, *missing, *marked.warnings]


def _units(stream: Stream, chapters: Sequence[ReadAlongChapter], words: bool) -> tuple[list[Unit], list[str]]:
    """Every caption (or word) of the book, found in the stream chapter after chapter."""
    units: list[Unit] = []
    warnings: list[str] = []
    pos = 0
    for k, chapter in enumerate(chapters):
        texts = [c.text for c in chapter.cues]
        at = anchor(stream.chars, pos, texts)
        if at < 0:
            warnings.append(f"chapter {k + 1} ({chapter.title!r}): its text is not in the book's pages; no overlay")
            continue
        pieces = [(w.start, w.end, w.text) for c in chapter.cues for w in (c.words if words and c.words else [c])]
        places, pos = match(stream.chars, at, "".join(compact(t) for _, _, t in pieces))
        first = 0
        for start, end, text in pieces:
            n = len(compact(text))
            units.append(Unit(k, start, end, places[first : first + n]))
            first += n
    return units, warnings


def _package(out: BinaryIO, pages: Pages, chapters: Sequence[ReadAlongChapter], marked: Marked) -> None:
    """The archive: the mimetype first and stored, the members, the audio and overlays, the package."""
    base = posixpath.dirname(pages.opf_path)
    audio = [posixpath.join(base, FOLDER, f"chapter{k + 1:04d}.mp3") for k in range(len(chapters))]
    overlays: list[tuple[str, str, int]] = []  # (document path, overlay path, milliseconds)
    changed: dict[str, bytes] = {}
    heard: set[int] = set()  # the chapters with pars
    for number, (document, pars) in enumerate(zip(pages.documents, marked.pars, strict=True), 1):
        kept = [p for p in pars if _ms(p.end) > _ms(p.start)]
        if pages.doctype is not None or kept:  # an upgraded book's pages all change
            changed[document.path] = serialize(document.root, pages.doctype)
        if not kept:
            continue
        path = posixpath.join(base, FOLDER, f"page{number:04d}.smil")
        changed[path] = smil(kept, document.path, path, audio)
        overlays.append((document.path, path, sum(_ms(p.end) - _ms(p.start) for p in kept)))
        heard.update(p.chapter for p in kept)
    add_overlays(pages, overlays, [audio[k] for k in sorted(heard)])
    changed[pages.opf_path] = serialize(pages.opf)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for path, data in pages.members.items():
            if path != "mimetype":
                archive.writestr(path, changed.pop(path, data))
        for path, data in changed.items():
            archive.writestr(path, data)
        for k in sorted(heard):
            archive.write(chapters[k].audio, audio[k], compress_type=zipfile.ZIP_STORED)


def smil(pars: Sequence[Par], page: str, path: str, audio: Sequence[str]) -> bytes:
    """A Media Overlay document: a `<par>` per text id, in reading order, with its audio clip."""
    here = posixpath.dirname(path)
    root = etree.Element(f"{{{SMIL_NS}}}smil", nsmap={None: SMIL_NS, "epub": OPS_NS}, version="3.0")
    body = etree.SubElement(root, f"{{{SMIL_NS}}}body")
    text_src = quote(posixpath.relpath(page, here))
    for n, par in enumerate(pars, 1):
        element = etree.SubElement(body, f"{{{SMIL_NS}}}par", id=f"par{n}")
        etree.SubElement(element, f"{{{SMIL_NS}}}text", src=f"{text_src}#{par.text_id}")
        etree.SubElement(
            element,
            f"{{{SMIL_NS}}}audio",
            src=quote(posixpath.relpath(audio[par.chapter], here)),
            clipBegin=f"{_ms(par.start) / 1000:.3f}s",
            clipEnd=f"{_ms(par.end) / 1000:.3f}s",
        )
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def add_overlays(pages: Pages, overlays: Sequence[tuple[str, str, int]], audio: Sequence[str]) -> None:
    """The package document with the overlays and audio in its manifest, each page's `media-overlay`,
    and each overlay's and the book's `media:duration` and the `media:active-class`."""
    opf = pages.opf
    base = posixpath.dirname(pages.opf_path)
    metadata, manifest = part(opf, "metadata", 0), part(opf, "manifest", 1)
    used = {str(i) for i in opf.xpath("//@id")}
    items = {str(i.get("id")): i for i in manifest.iter("{*}item")}

    def new_id(stem: str) -> str:
        n = 1
        while f"{stem}{n}" in used:
            n += 1
        used.add(f"{stem}{n}")
        return f"{stem}{n}"

    def item(path: str, media_type: str, stem: str) -> str:
        name = new_id(stem)
        href = quote(posixpath.relpath(path, base or "."))
        etree.SubElement(manifest, f"{{{OPF_NS}}}item", id=name, href=href, attrib={"media-type": media_type})
        return name

    for path in audio:
        item(path, "audio/mpeg", "bs-audio-")
    total = 0
    for page, path, ms in overlays:
        smil_id = item(path, "application/smil+xml", "bs-overlay-")
        items[pages.manifest_ids[page]].set("media-overlay", smil_id)
        _meta(metadata, "media:duration", clock(ms), refines=f"#{smil_id}")
        total += ms
    if overlays:
        _meta(metadata, "media:duration", clock(total))
        _meta(metadata, "media:active-class", ACTIVE_CLASS)


def _meta(metadata: etree._Element, prop: str, value: str, refines: str | None = None) -> None:
    meta = etree.SubElement(metadata, f"{{{OPF_NS}}}meta", property=prop)
    if refines is not None:
        meta.set("refines", refines)
    meta.text = value


def clock(ms: int) -> str:
    """A SMIL full clock value: 1:02:03.456."""
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def serialize(root: etree._Element, doctype: str | None = None) -> bytes:
    """A document as XML, with its DOCTYPE (or `doctype`) and its XML declaration."""
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="utf-8", doctype=doctype)
