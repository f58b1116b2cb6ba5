"""EPUB 2 and 3 books: the reading order from the spine, chapters from the table of contents.

The package (OPF, NCX, nav) is read by `books.opf`, which tolerates what real books do. Then:

- The spine's linear documents are read in order, each once (SiSU lists one file many times, with
  fragments). Non-linear ones (pop-up notes, a multilingual book's other languages) are not read.
- Front and back matter that is not read aloud is skipped: the navigation document, documents that
  the guide (EPUB 2), the landmarks (EPUB 3) or their own `epub:type` mark as cover, title page, table
  of contents, copyright page, index, or list of figures / tables, and pages that are mostly links (a
  table of contents the book does not mark). Entries of the table of contents that point at a skipped
  document still start their chapters, with the documents after it (pandoc splits a DocBook chapter
  whose first file is the chapter's own list of sections).
- Chapters: every table-of-contents entry, at every depth, starts a chapter where it points: at the
  start of its document, or at the element its `#fragment` names (an anchor that is missing counts as
  the document's start). A document no entry points at continues the chapter before it (books split
  chapters over files); text before the first entry is a chapter of its own, titled by its first heading.
- Merging: an entry whose text is only its heading (a part's title page, or a parent entry pointing
  at the same place as its first child) is not a chapter of its own: its heading is read at the start
  of the next chapter (or, at the end of the book, at the end of the last one).
- Nothing is dropped silently: every document not read is listed in `Book.skipped` with the reason,
  and a document that cannot be parsed (or is missing from the archive) is skipped, not fatal.
- Encrypted content (DRM: META-INF/rights.xml, or encryption.xml covering more than obfuscated fonts)
  is refused: its text cannot be read.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass, field

from barkserve.books.html import CODE, MARK, epub_types, html_lines, soup_of
from barkserve.books.language import book_language
from barkserve.books.model import Book, Chapter, as_sentence, check_chapters, clean_title
from barkserve.books.opf import (
    DOCUMENT_TYPES,
    OPS_NS,
    Package,
    TocEntry,
    parse_xml,
    read_member,
    read_package,
    resolve,
    table_of_contents,
)
from barkserve.errors import BarkServeError, BookTooLarge, InvalidBook, ProtectedBook

SKIPPED_TYPES = {
    "cover",
    "toc",
    "copyright-page",
    "titlepage",
    "title-page",
    "halftitlepage",
    "index",
    "loi",
    "lot",
    "landmarks",
    "page-list",
    "copyright",
}
# Encryption algorithms that only obfuscate embedded fonts (IDPF and Adobe): the text is readable.
FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
ENC_NS = "{http://www.w3.org/2001/04/xmlenc#}"
# A zip bomb (a small upload that unpacks to gigabytes) or an archive of countless members is refused
# from the sizes the zip declares, before any member is read: zipfile never unpacks past a declared size.
MAX_UNPACKED_BYTES = 128 * 1024 * 1024
MAX_MEMBERS = 10_000
# A page with at least this many links, whose words are mostly link text, is a table of contents.
TOC_PAGE_LINKS = 8
TOC_PAGE_LINK_SHARE = 0.7
Line = tuple[int | None, str]


@dataclass
class Piece:
    """A run of the book's lines that one table-of-contents entry (or none: the opening) starts."""

    title: str | None
    lines: list[Line] = field(default_factory=list)

    @property
    def has_body(self) -> bool:
        return any(level is None or level == CODE for level, _ in self.lines)


def read_epub(data: bytes, name: str) -> Book:
    """The chapters, title, author, language and cover of an EPUB file's bytes."""
    archive = check_container(data, name)
    package = read_package(archive, name)
    skipped: dict[str, list[str]] = {}
    documents = spine_documents(package, skipped)
    toc = table_of_contents(archive, package, name, documents)
    not_read = matter_paths(archive, package)
    pieces: list[Piece] = [Piece(None)]
    for path, linear in documents:
        if not linear:
            skipped.setdefault("outside the reading order (non-linear)", []).append(path)
        elif path in not_read:
            skipped.setdefault(not_read[path], []).append(path)
        else:
            read_document(archive, path, toc, pieces, skipped)
    chapters, merged = merge_pieces(pieces, package.title or name)
    notes = [f"{len(paths)} document(s) {why}: {listing(paths)}" for why, paths in skipped.items()]
    if merged:
        notes.append(
            f"{len(merged)} table-of-contents entries have no text of their own (at most a heading), "
            f"so they are read at the start of the next chapter: {listing([repr(t) for t in merged])}"
        )
    text = "\n".join(c.text for c in chapters[:20])
    return Book(
        clean_title(package.title or name, "Untitled"),
        package.author,
        cover_of(archive, package),
        check_chapters(chapters, name),
        book_language(package.language, text),
        tuple(notes),
    )


def spine_documents(package: Package, skipped: dict[str, list[str]]) -> list[tuple[str, bool]]:
    """The spine's (X)HTML documents as (path, linear), each once, in reading order."""
    seen: dict[str, bool] = {}
    for idref, linear in package.spine:
        item = package.manifest.get(idref)
        if item is None:
            skipped.setdefault("named in the spine but not in the manifest", []).append(idref)
            continue
        if item.media_type in DOCUMENT_TYPES and "nav" not in item.properties and item.path not in seen:
            seen[item.path] = linear
    return list(seen.items())


def matter_paths(archive: zipfile.ZipFile, package: Package) -> dict[str, str]:
    """Documents that the guide (EPUB 2) or the landmarks (EPUB 3) mark as matter not read aloud -> why."""
    out: dict[str, str] = {}
    for kind, path in package.guide:
        if kind in SKIPPED_TYPES:
            out.setdefault(path, f"marked '{kind}' by the guide")
    nav = next((i for i in package.manifest.values() if "nav" in i.properties), None)
    data = read_member(archive, nav.path) if nav is not None else None
    if nav is None or data is None:
        return out
    try:
        root = parse_xml(data, "the navigation document")
    except InvalidBook:
        return out
    for element in root.iter("{*}nav"):
        if "landmarks" not in (element.get(f"{{{OPS_NS}}}type") or "").split():
            continue
        for link in element.iter("{*}a"):
            kinds = set((link.get(f"{{{OPS_NS}}}type") or "").split()) & SKIPPED_TYPES
            if kinds and link.get("href"):
                path = resolve(posixpath.dirname(nav.path), str(link.get("href")))[0]
                out.setdefault(path, f"marked '{sorted(kinds)[0]}' by the landmarks")
    return out


def read_document(
    archive: zipfile.ZipFile, path: str, toc: list[TocEntry], pieces: list[Piece], skipped: dict[str, list[str]]
) -> None:
    """Add one document's lines to `pieces`, a new piece at each table-of-contents entry pointing into it."""
    data = read_member(archive, path)
    if data is None:
        skipped.setdefault("missing from the archive", []).append(path)
        return
    here = [(k, entry) for k, entry in enumerate(toc) if entry.path == path]
    marks: dict[str, str] = {}
    for k, entry in here:
        if entry.fragment:
            marks[entry.fragment] = f"{marks[entry.fragment]},{k}" if entry.fragment in marks else str(k)
    try:
        why = matter_kind(data)
        if why is not None:
            skipped.setdefault(why, []).append(path)
            pieces.extend(Piece(entry.title) for _, entry in here)
            return
        lines, _ = html_lines(data, marks, mark_code=True)
    except BarkServeError as exc:  # one unreadable document: the rest of the book is still read
        skipped.setdefault(f"that could not be read ({exc.message})", []).append(path)
        return
    found = {int(k) for level, label in lines if level == MARK for k in label.split(",")}
    for k, entry in here:  # entries at the document's start, and those whose anchor is missing
        if k not in found:
            pieces.append(Piece(entry.title))
    for level, text in lines:
        if level == MARK:
            pieces.extend(Piece(toc[int(k)].title) for k in text.split(","))
        else:
            pieces[-1].lines.append((level, text))


def matter_kind(data: bytes) -> str | None:
    """Why a document is not read aloud (its `epub:type`, or it is mostly links), or None."""
    soup = soup_of(data)
    body = soup.find("body")
    if body is None:
        return None
    first = body.find(["section", "div"])
    kinds = (epub_types(body) | (epub_types(first) if first is not None else set())) & SKIPPED_TYPES
    if kinds:
        return f"typed '{sorted(kinds)[0]}' (epub:type)"
    links = body.find_all("a", href=True)
    if len(links) >= TOC_PAGE_LINKS:
        linked = sum(len(a.get_text(" ").split()) for a in links)
        if linked >= TOC_PAGE_LINK_SHARE * max(1, len(body.get_text(" ").split())):
            return "that are a table of contents (mostly links)"
    return None


def merge_pieces(pieces: list[Piece], book_title: str) -> tuple[list[Chapter], list[str]]:
    """Chapters from the pieces: a piece with only headings joins the next one (the last, the one before).

    Returns:
        The chapters, and the titles of the entries that were merged (for `Book.skipped`).
    """
    kept: list[Piece] = []
    carried: list[Line] = []
    merged: list[str] = []
    for piece in pieces:
        if not piece.has_body:
            if piece.title:
                merged.append(piece.title)
            carried.extend(piece.lines)
            continue
        kept.append(Piece(piece.title, carried + piece.lines))
        carried = []
    if carried:
        if kept:
            kept[-1].lines.extend(carried)
        else:
            kept.append(Piece(None, carried))
    chapters = []
    for number, piece in enumerate(kept, 1):
        heading = next((text for level, text in piece.lines if level is not None and level > 0), None)
        title = piece.title or heading or (book_title if number == 1 else "")
        text = "\n".join(t if level is None or level == CODE else as_sentence(t) for level, t in piece.lines)
        code = sum(len(t.split()) for level, t in piece.lines if level == CODE)
        chapters.append(Chapter(clean_title(title, f"Chapter {number}"), text, code))
    return chapters, merged


def listing(paths: list[str], shown: int = 5) -> str:
    names = ", ".join(paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def check_container(data: bytes, name: str) -> zipfile.ZipFile:
    """The zip archive; refuse what is no zip archive, and content encrypted with DRM."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        check_unpacked(archive, name)
        if archive.testzip() is not None:
            raise zipfile.BadZipFile("a member's checksum does not match")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidBook(f"{name} is not a valid EPUB: the zip archive is damaged ({exc})") from exc
    if "META-INF/container.xml" not in names:
        raise InvalidBook(f"{name} is not an EPUB: it has no META-INF/container.xml")
    protected = ProtectedBook(
        f"{name} is protected by DRM (its content is encrypted), so its text cannot be read; "
        "use a DRM-free edition of the book"
    )
    if "META-INF/rights.xml" in names:
        raise protected
    if "META-INF/encryption.xml" in names:
        try:
            root = parse_xml(archive.read("META-INF/encryption.xml"), "META-INF/encryption.xml")
        except InvalidBook as exc:
            raise protected from exc
        for data_tag in root.iter(f"{ENC_NS}EncryptedData"):
            method = data_tag.find(f"{ENC_NS}EncryptionMethod")
            if method is None or method.get("Algorithm") not in FONT_OBFUSCATION:
                raise protected
    return archive


def check_unpacked(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse an archive with more than MAX_MEMBERS members or that unpacks to over MAX_UNPACKED_BYTES."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise BookTooLarge(f"{name} holds {len(members):,} files; an EPUB is read with up to {MAX_MEMBERS:,}")
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_UNPACKED_BYTES:
        raise BookTooLarge(
            f"{name} unpacks to {unpacked:,} bytes; an EPUB is read when it unpacks to at most "
            f"{MAX_UNPACKED_BYTES:,} bytes (is it a zip bomb?)"
        )


IMAGE_TYPES = ("image/jpeg", "image/png")


def cover_of(archive: zipfile.ZipFile, package: Package) -> bytes | None:
    """The cover image: the item EPUB 3 marks `cover-image`, else the one EPUB 2's `<meta name="cover">` names."""
    items = [i for i in package.manifest.values() if "cover-image" in i.properties]
    named = package.manifest.get(package.cover_id or "")
    for item in [*items, *([named] if named is not None else [])]:
        if item.media_type in IMAGE_TYPES:
            data = read_member(archive, item.path)
            if data:
                return data
    return None
