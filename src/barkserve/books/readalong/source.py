"""The pages of a read-along book: the EPUB's own (parsed as the EPUB reader parses), or made from the text."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from lxml import etree

from barkserve.books.epub import check_container, matter_kind, matter_paths, spine_documents
from barkserve.books.opf import DC_NS, OPF_NS, OPS_NS, XHTML_NS, parse_xml, read_package, table_of_contents
from barkserve.books.readalong.model import EPOCH, Pages, ReadAlongBook, ReadAlongChapter, book_id, part
from barkserve.books.readalong.text import Document
from barkserve.errors import BarkServeError

NAME = "the book"
CONTAINER = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">\n'
    b'<rootfiles><rootfile full-path="EPUB/package.opf" media-type="application/oebps-package+xml"/></rootfiles>\n'
    b"</container>\n"
)
DOCTYPE = "<!DOCTYPE html>"


def source_pages(data: bytes) -> tuple[Pages, list[str]]:
    """The EPUB's members, its package document (an EPUB 2's upgraded) and the pages it reads aloud.

    Returns:
        The pages, and warnings for pages that are read aloud but are not well-formed XML (no overlay).
    """
    archive = check_container(data, NAME)
    package = read_package(archive, NAME)
    spine = spine_documents(package, {})
    not_read = matter_paths(archive, package)
    members = {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    documents, warnings = [], []
    for path, linear in spine:
        page = members.get(path)
        if not linear or path in not_read or page is None:
            continue
        try:
            if matter_kind(page) is not None:
                continue
            documents.append(Document.of(path, parse_xml(page, path)))
        except BarkServeError as exc:
            warnings.append(f"{path} is read aloud but has no overlay: {exc.message}")
    opf = parse_xml(members[package.opf_path], package.opf_path)
    upgraded = not str(opf.get("version") or "").startswith("3")
    if upgraded:
        warnings += _upgrade(opf, package.opf_path, members, table_of_contents(archive, package, NAME, spine))
        read = {d.path for d in documents}
        for document in documents:
            as_html5(document.root)
        pages = [i.path for i in package.manifest.values() if i.media_type == "application/xhtml+xml"]
        for path in pages:
            if path not in read and path in members:
                members[path] = _html5_page(members[path])
    ids = {item.path: name for name, item in package.manifest.items()}
    return Pages(documents, package.opf_path, opf, members, ids, DOCTYPE if upgraded else None), warnings


def as_html5(root: etree._Element) -> None:
    """An XHTML 1.1 page's head as EPUB 3 takes it: no `http-equiv` content type (the DOCTYPE is
    written as `<!DOCTYPE html>` by `writer.serialize`). Its body is left as it is."""
    for meta in list(root.iter(f"{{{XHTML_NS}}}meta")):
        kind = (meta.get("http-equiv") or "").lower()
        if kind == "content-type":
            del meta.attrib["http-equiv"]
            meta.attrib.pop("content", None)
            meta.set("charset", "utf-8")
        elif kind not in ("", "default-style", "refresh", "content-language", "x-ua-compatible"):
            _remove(meta)  # Content-Style-Type and the like, which HTML5 does not have


def _remove(element: etree._Element) -> None:
    """Remove an element, keeping its tail (white space in a head) in place."""
    parent, previous = element.getparent(), element.getprevious()
    if parent is None:
        return
    if element.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _html5_page(data: bytes) -> bytes:
    """A page not read aloud with `as_html5`'s changes (as it is when it is not well-formed XML)."""
    try:
        root = parse_xml(data, "a page")
    except BarkServeError:
        return data
    as_html5(root)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="utf-8", doctype=DOCTYPE)


def _upgrade(opf: etree._Element, opf_path: str, members: dict[str, bytes], toc: Sequence[object]) -> list[str]:
    """An EPUB 2 package as EPUB 3: version 3.0, dcterms:modified, a navigation document from its TOC."""
    opf.set("version", "3.0")
    metadata, manifest = part(opf, "metadata", 0), part(opf, "manifest", 1)
    modified = etree.SubElement(metadata, f"{{{OPF_NS}}}meta", property="dcterms:modified")
    modified.text = EPOCH
    for element in metadata.iter():  # EPUB 2's opf:role, opf:file-as, opf:scheme... EPUB 3 has no such attributes
        for name in [n for n in element.attrib if str(n).startswith(f"{{{OPF_NS}}}")]:
            del element.attrib[name]
    for meta in list(metadata.iter("{*}meta")):
        if meta.get("name") is not None and meta.get("content") is None:
            metadata.remove(meta)
    base = posixpath.dirname(opf_path)
    path = posixpath.join(base, "readalong-nav.xhtml")
    entries = [(str(getattr(e, "title", "")), str(getattr(e, "path", "")), getattr(e, "fragment", None)) for e in toc]
    members[path] = nav_page(entries, path, str(opf.get(f"{{{_XML}}}lang") or "") or None)
    attrib = {"id": "bs-nav", "href": posixpath.relpath(path, base or "."), "media-type": "application/xhtml+xml"}
    etree.SubElement(manifest, f"{{{OPF_NS}}}item", attrib={**attrib, "properties": "nav"})
    return ["the EPUB 2 book is written as EPUB 3 (needed for media overlays), with a navigation document"]


_XML = "http://www.w3.org/XML/1998/namespace"


def made_pages(book: ReadAlongBook, chapters: Sequence[ReadAlongChapter]) -> tuple[Pages, list[str]]:
    """A plain EPUB 3 of the chapters' text: a page per chapter, a paragraph per line."""
    language = book.language or "und"
    members: dict[str, bytes] = {"mimetype": b"application/epub+zip", "META-INF/container.xml": CONTAINER}
    documents, paths = [], []
    for k, chapter in enumerate(chapters):
        path = f"EPUB/text/chapter{k + 1:04d}.xhtml"
        page = chapter_page(chapter, language)
        members[path] = page
        documents.append(Document.of(path, parse_xml(page, path)))
        paths.append(path)
    entries = [(c.title, p, None) for c, p in zip(chapters, paths, strict=True)]
    members["EPUB/nav.xhtml"] = nav_page(entries, "EPUB/nav.xhtml", language)
    opf = made_package(book, chapters, language, paths)
    ids = {p: f"chapter{k + 1:04d}" for k, p in enumerate(paths)}
    return Pages(documents, "EPUB/package.opf", opf, members, ids), []


def _page(title: str, language: str) -> tuple[etree._Element, etree._Element]:
    html = etree.Element(f"{{{XHTML_NS}}}html", nsmap={None: XHTML_NS, "epub": OPS_NS})
    html.set("lang", language)
    html.set(f"{{{_XML}}}lang", language)
    head = etree.SubElement(html, f"{{{XHTML_NS}}}head")
    etree.SubElement(head, f"{{{XHTML_NS}}}meta", charset="utf-8")
    etree.SubElement(head, f"{{{XHTML_NS}}}title").text = title or "Untitled"
    return html, etree.SubElement(html, f"{{{XHTML_NS}}}body")


def chapter_page(chapter: ReadAlongChapter, language: str) -> bytes:
    """A chapter's page: a section of paragraphs, one per line of its text."""
    html, body = _page(chapter.title, language)
    section = etree.SubElement(body, f"{{{XHTML_NS}}}section")
    section.set(f"{{{OPS_NS}}}type", "chapter")
    for line in chapter.text.split("\n"):
        if line.strip():
            etree.SubElement(section, f"{{{XHTML_NS}}}p").text = line.strip()
    return etree.tostring(html, xml_declaration=True, encoding="utf-8", doctype=DOCTYPE)


def nav_page(entries: Sequence[tuple[str, str, str | None]], path: str, language: str | None) -> bytes:
    """A navigation document listing `entries` (title, page path, fragment)."""
    html, body = _page("Contents", language or "und")
    nav = etree.SubElement(body, f"{{{XHTML_NS}}}nav", id="toc")
    nav.set(f"{{{OPS_NS}}}type", "toc")
    etree.SubElement(nav, f"{{{XHTML_NS}}}h1").text = "Contents"
    ol = etree.SubElement(nav, f"{{{XHTML_NS}}}ol")
    here = posixpath.dirname(path)
    for title, page, fragment in entries:
        href = posixpath.relpath(page, here or ".") + (f"#{fragment}" if fragment else "")
        link = etree.SubElement(etree.SubElement(ol, f"{{{XHTML_NS}}}li"), f"{{{XHTML_NS}}}a", href=href)
        link.text = title.strip() or "Untitled"
    if not entries:
        etree.SubElement(etree.SubElement(ol, f"{{{XHTML_NS}}}li"), f"{{{XHTML_NS}}}span").text = "Untitled"
    return etree.tostring(html, xml_declaration=True, encoding="utf-8", doctype=DOCTYPE)


def made_package(
    book: ReadAlongBook, chapters: Sequence[ReadAlongChapter], language: str, paths: Sequence[str]
) -> etree._Element:
    """The package document of a made book (its overlays are added by `writer.add_overlays`)."""
    opf = etree.Element(f"{{{OPF_NS}}}package", nsmap={None: OPF_NS}, version="3.0")
    opf.set("unique-identifier", "bookid")
    metadata = etree.SubElement(opf, f"{{{OPF_NS}}}metadata", nsmap={"dc": DC_NS})
    etree.SubElement(metadata, f"{{{DC_NS}}}identifier", id="bookid").text = book_id(book, chapters)
    etree.SubElement(metadata, f"{{{DC_NS}}}title").text = book.title or "Untitled"
    etree.SubElement(metadata, f"{{{DC_NS}}}language").text = language
    if book.author:
        etree.SubElement(metadata, f"{{{DC_NS}}}creator").text = book.author
    etree.SubElement(metadata, f"{{{OPF_NS}}}meta", property="dcterms:modified").text = EPOCH
    manifest = etree.SubElement(opf, f"{{{OPF_NS}}}manifest")
    nav = {"id": "nav", "href": "nav.xhtml", "media-type": "application/xhtml+xml", "properties": "nav"}
    etree.SubElement(manifest, f"{{{OPF_NS}}}item", attrib=nav)
    spine = etree.SubElement(opf, f"{{{OPF_NS}}}spine")
    for k, path in enumerate(paths):
        name = f"chapter{k + 1:04d}"
        attrib = {"id": name, "href": posixpath.relpath(path, "EPUB"), "media-type": "application/xhtml+xml"}
        etree.SubElement(manifest, f"{{{OPF_NS}}}item", attrib=attrib)
        etree.SubElement(spine, f"{{{OPF_NS}}}itemref", idref=name)
    return opf
