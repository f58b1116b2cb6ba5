"""An EPUB's package read with lxml, tolerating what real books do: container, OPF, NCX and nav.

Real books break the rules readers are lenient about, and each of these is read, not refused:
manifest items that name a `#fragment` (SiSU) or a file the archive lacks (DocBook), table-of-contents
hrefs relative to the wrong folder (Sphinx's NCX), several navigation documents (Sphinx's multilingual
EPUB 3). XML is parsed with no DTD, no entity expansion and no network; each member is read only up to
its declared size, which `epub.check_unpacked` has bounded.
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass, field
from urllib.parse import unquote, urldefrag

from lxml import etree

from barkserve.errors import InvalidBook

OPF_NS = "http://www.idpf.org/2007/opf"
DC_NS = "http://purl.org/dc/elements/1.1/"
NCX_NS = "http://www.daisy.org/z3986/2005/ncx/"
XHTML_NS = "http://www.w3.org/1999/xhtml"
OPS_NS = "http://www.idpf.org/2007/ops"
DOCUMENT_TYPES = {"application/xhtml+xml", "text/html", "application/xml", "text/xml", "application/x-dtbook+xml"}
# Deeper tables of contents than any book's: the walk below stops there.
MAX_TOC_DEPTH = 32


@dataclass(frozen=True)
class TocEntry:
    """A table-of-contents entry: its title, the document it points into and the anchor there (or None)."""

    title: str
    path: str
    fragment: str | None
    depth: int


@dataclass(frozen=True)
class Item:
    path: str
    media_type: str
    properties: frozenset[str] = frozenset()


@dataclass
class Package:
    """What the OPF says: metadata, the manifest by id, the spine (id, linear) and the guide."""

    opf_path: str
    title: str | None = None
    author: str | None = None
    language: str | None = None
    manifest: dict[str, Item] = field(default_factory=dict)
    spine: list[tuple[str, bool]] = field(default_factory=list)
    guide: list[tuple[str, str]] = field(default_factory=list)  # (type, path)
    toc_id: str | None = None
    cover_id: str | None = None


def parse_xml(data: bytes, what: str) -> etree._Element:
    """Parse XML safely (no DTD, entities or network); an InvalidBook naming `what` when it is not XML."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidBook(f"{what} is not well-formed XML ({exc})") from exc
    if root is None:
        raise InvalidBook(f"{what} is empty")
    return root


def read_member(archive: zipfile.ZipFile, path: str) -> bytes | None:
    """A member's bytes, or None when the archive has no such member."""
    try:
        return archive.read(path)
    except KeyError:
        return None


def opf_path(archive: zipfile.ZipFile, name: str) -> str:
    """The package document's path, from META-INF/container.xml."""
    data = read_member(archive, "META-INF/container.xml")
    if data is None:
        raise InvalidBook(f"{name} is not an EPUB: it has no META-INF/container.xml")
    root = parse_xml(data, f"{name}'s META-INF/container.xml")
    for rootfile in root.iter("{*}rootfile"):
        full = rootfile.get("full-path")
        if full and (rootfile.get("media-type") in (None, "application/oebps-package+xml")):
            return posixpath.normpath(unquote(full))
    raise InvalidBook(f"{name}'s META-INF/container.xml names no package document (rootfile)")


def read_package(archive: zipfile.ZipFile, name: str) -> Package:
    """The OPF of an EPUB: an InvalidBook when it is missing or not XML."""
    path = opf_path(archive, name)
    data = read_member(archive, path)
    if data is None:
        raise InvalidBook(f"{name} is not a readable EPUB: its package document {path} is missing from the archive")
    root = parse_xml(data, f"{name}'s package document {path}")
    if etree.QName(root).localname != "package":
        raise InvalidBook(f"{name}'s package document {path} is not an OPF package (its root is <{root.tag}>)")
    base = posixpath.dirname(path)
    package = Package(path)
    metadata = root.find("{*}metadata")
    if metadata is not None:
        package.title = first_text(metadata, "title")
        package.author = first_text(metadata, "creator")
        package.language = first_text(metadata, "language")
        for meta in metadata.iter("{*}meta"):
            if meta.get("name") == "cover" and meta.get("content"):
                package.cover_id = meta.get("content")
    for item in root.iterfind("{*}manifest/{*}item"):
        item_id, href = item.get("id"), item.get("href")
        if item_id and href:
            package.manifest.setdefault(
                item_id,
                Item(
                    resolve(base, href)[0],
                    item.get("media-type", ""),
                    frozenset((item.get("properties") or "").split()),
                ),
            )
    spine = root.find("{*}spine")
    if spine is not None:
        package.toc_id = spine.get("toc")
        for ref in spine.iterfind("{*}itemref"):
            if ref.get("idref"):
                package.spine.append((str(ref.get("idref")), (ref.get("linear") or "yes").lower() != "no"))
    for ref in root.iterfind("{*}guide/{*}reference"):
        if ref.get("href"):
            package.guide.append(((ref.get("type") or "").lower(), resolve(base, str(ref.get("href")))[0]))
    return package


def first_text(metadata: etree._Element, tag: str) -> str | None:
    for element in metadata.iter(f"{{{DC_NS}}}{tag}"):
        text = " ".join("".join(element.itertext()).split())
        if text:
            return text
    return None


def resolve(base: str, href: str) -> tuple[str, str | None]:
    """(the archive path, the fragment or None) an href relative to folder `base` points at."""
    target, fragment = urldefrag(href.strip())
    path = posixpath.normpath(posixpath.join(base, unquote(target))) if target else base
    return path.lstrip("/"), unquote(fragment) or None


def ncx_toc(archive: zipfile.ZipFile, package: Package, name: str) -> list[TocEntry]:
    """The NCX's navMap as entries in reading order (depth from 0), [] without a readable NCX."""
    item = package.manifest.get(package.toc_id or "") or next(
        (i for i in package.manifest.values() if i.media_type == "application/x-dtbncx+xml"), None
    )
    data = read_member(archive, item.path) if item is not None else None
    if item is None or data is None:
        return []
    try:
        root = parse_xml(data, f"{name}'s NCX {item.path}")
    except InvalidBook:
        return []  # a broken NCX is no reason to refuse the book: the nav or the spine still order it
    nav_map = root.find("{*}navMap")
    entries: list[TocEntry] = []
    base = posixpath.dirname(item.path)

    def walk(parent: etree._Element, depth: int) -> None:
        if depth > MAX_TOC_DEPTH:
            return
        for point in parent.iterfind("{*}navPoint"):
            label = point.find("{*}navLabel")
            content = point.find("{*}content")
            title = " ".join("".join(label.itertext()).split()) if label is not None else ""
            if content is not None and content.get("src"):
                path, fragment = resolve(base, str(content.get("src")))
                entries.append(TocEntry(title, path, fragment, depth))
            walk(point, depth + 1)

    if nav_map is not None:
        walk(nav_map, 0)
    return entries


def nav_toc(archive: zipfile.ZipFile, package: Package, name: str) -> list[TocEntry]:
    """The EPUB 3 navigation document's `toc` nav as entries (depth from 0); [] without one.

    Only the manifest item marked `nav` counts: other navigation documents (a multilingual book has one
    per language) are ordinary content, read or skipped like any other.
    """
    item = next((i for i in package.manifest.values() if "nav" in i.properties), None)
    data = read_member(archive, item.path) if item is not None else None
    if item is None or data is None:
        return []
    try:
        root = parse_xml(data, f"{name}'s navigation document {item.path}")
    except InvalidBook:
        return []
    base = posixpath.dirname(item.path)
    navs = list(root.iter("{*}nav"))
    toc = next((n for n in navs if "toc" in (n.get(f"{{{OPS_NS}}}type") or "").split()), navs[0] if navs else None)
    entries: list[TocEntry] = []

    def walk(ol: etree._Element, depth: int) -> None:
        if depth > MAX_TOC_DEPTH:
            return
        for li in ol.iterfind("{*}li"):
            link = li.find("{*}a")
            if link is not None and link.get("href"):
                title = " ".join("".join(link.itertext()).split())
                path, fragment = resolve(base, str(link.get("href")))
                entries.append(TocEntry(title, path, fragment, depth))
            for child in li.iterfind("{*}ol"):
                walk(child, depth + 1)

    for ol in toc.iterfind("{*}ol") if toc is not None else []:
        walk(ol, 0)
    return entries


def table_of_contents(
    archive: zipfile.ZipFile, package: Package, name: str, documents: list[tuple[str, bool]]
) -> list[TocEntry]:
    """The book's table of contents: of the nav and the NCX, the one more of whose entries point at
    `documents` (the spine's, as (path, linear)). An entry whose path is no document's but whose file
    name is that of exactly one linear document (else of exactly one document) points at that one:
    Sphinx writes TOC hrefs relative to the wrong folder."""
    paths = {path for path, _ in documents}
    by_name: dict[str, list[str]] = {}
    for path, _ in sorted(documents, key=lambda d: not d[1]):
        by_name.setdefault(posixpath.basename(path), []).append(path)
    linear_count: dict[str, int] = {}
    for path, linear in documents:
        if linear:
            linear_count[posixpath.basename(path)] = linear_count.get(posixpath.basename(path), 0) + 1

    def fixed(entries: list[TocEntry]) -> list[TocEntry]:
        out = []
        for entry in entries:
            path, base = entry.path, posixpath.basename(entry.path)
            if path not in paths and (linear_count.get(base) == 1 or len(by_name.get(base, [])) == 1):
                path = by_name[base][0]  # linear documents come first
            out.append(TocEntry(entry.title, path, entry.fragment, entry.depth))
        return out

    candidates = [fixed(nav_toc(archive, package, name)), fixed(ncx_toc(archive, package, name))]
    return max(candidates, key=lambda entries: sum(e.path in paths for e in entries))
