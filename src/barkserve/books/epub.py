"""EPUB 2 and 3 books (ebooklib): reading order from the spine, chapter titles from the table of contents.

- The spine's linear documents are read in order; non-linear ones (pop-up notes) are left out.
- Front and back matter that is not read aloud is skipped: the navigation document, and documents
  that the guide (EPUB 2), the landmarks (EPUB 3) or their own `epub:type` mark as cover, title page,
  table of contents, copyright page, index, or list of figures / tables.
- A document the table of contents points at starts a chapter with that entry's title (the first one
  when several point into it); a document it does not point at continues the chapter before it (books
  often split a chapter over files), or, before the first chapter, starts one titled by its heading.
- Encrypted content (DRM: META-INF/rights.xml, or encryption.xml covering more than obfuscated fonts)
  is refused: its text cannot be read.
"""

from __future__ import annotations

import io
import posixpath
import warnings
import zipfile
from typing import Any
from urllib.parse import unquote, urldefrag
from xml.etree import ElementTree

from barkserve.books.html import epub_types, html_text, soup_of
from barkserve.books.model import Book, Chapter, check_chapters, clean_title
from barkserve.errors import BookTooLarge, InvalidBook, ProtectedBook

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


def read_epub(data: bytes, name: str) -> Book:
    """The chapters, title, author and cover of an EPUB file's bytes."""
    check_container(data, name)
    from ebooklib import ITEM_DOCUMENT, epub

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib warns about options it will change in future versions
            book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": False})
    except Exception as exc:  # ebooklib raises KeyError, EpubException, XML errors: all mean unreadable
        raise InvalidBook(f"{name} is not a readable EPUB ({type(exc).__name__}: {exc})") from exc
    titles = toc_titles(book.toc)
    skipped = skipped_hrefs(book)
    chapters: list[Chapter] = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ITEM_DOCUMENT or str(linear).lower() == "no":
            continue
        href = posixpath.normpath(item.get_name())
        if href in skipped or isinstance(item, epub.EpubNav) or "nav" in (getattr(item, "properties", None) or []):
            continue
        content = item.get_content()
        if document_types(content) & SKIPPED_TYPES:
            continue
        text, heading = html_text(content)
        if href in titles:
            chapters.append(Chapter(clean_title(titles[href], f"Chapter {len(chapters) + 1}"), text))
        elif chapters:
            previous = chapters[-1]
            chapters[-1] = Chapter(previous.title, f"{previous.text}\n{text}".strip("\n"))
        elif text.strip():
            chapters.append(Chapter(clean_title(heading or "", "Opening"), text))
    title = first_meta(book, "title") or name
    return Book(
        clean_title(title, "Untitled"), first_meta(book, "creator"), cover_of(book), check_chapters(chapters, name)
    )


def check_container(data: bytes, name: str) -> None:
    """Refuse what is no zip archive, and content encrypted with DRM."""
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
            root = ElementTree.fromstring(archive.read("META-INF/encryption.xml"))
        except ElementTree.ParseError as exc:
            raise protected from exc
        for data_tag in root.iter(f"{ENC_NS}EncryptedData"):
            method = data_tag.find(f"{ENC_NS}EncryptionMethod")
            if method is None or method.get("Algorithm") not in FONT_OBFUSCATION:
                raise protected


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


def toc_titles(toc: Any) -> dict[str, str]:
    """Document path -> the title of the first table-of-contents entry pointing into it."""
    titles: dict[str, str] = {}

    def walk(entries: Any) -> None:
        for entry in entries:
            if isinstance(entry, tuple | list) and len(entry) == 2:
                section, children = entry
                add(section)
                walk(children)
            else:
                add(entry)

    def add(entry: Any) -> None:
        href, title = getattr(entry, "href", None), getattr(entry, "title", None)
        if href and title:
            titles.setdefault(posixpath.normpath(unquote(urldefrag(href)[0])), title)

    walk(toc)
    return titles


def skipped_hrefs(book: Any) -> set[str]:
    """Documents the guide (EPUB 2) or the landmarks (EPUB 3) mark as matter that is not read aloud."""
    skipped = set()
    for ref in getattr(book, "guide", None) or []:
        if str(ref.get("type", "")).lower() in SKIPPED_TYPES and ref.get("href"):
            skipped.add(posixpath.normpath(unquote(urldefrag(ref["href"])[0])))
    for item in book.get_items():
        if "nav" not in (getattr(item, "properties", None) or []) and type(item).__name__ != "EpubNav":
            continue
        base = posixpath.dirname(item.get_name())
        soup = soup_of(item.get_content())
        for nav in soup.find_all("nav"):
            if "landmarks" not in epub_types(nav):
                continue
            for link in nav.find_all("a"):
                if epub_types(link) & SKIPPED_TYPES and link.get("href"):
                    target = unquote(urldefrag(str(link["href"]))[0])
                    skipped.add(posixpath.normpath(posixpath.join(base, target)))
    return skipped


def document_types(content: bytes) -> set[str]:
    """The `epub:type` of a document's body and of its first section (how EPUB 3 marks a cover page)."""
    soup = soup_of(content)
    body = soup.find("body")
    if body is None:
        return set()
    types = epub_types(body)
    first = body.find(["section", "div"])
    return types | (epub_types(first) if first is not None else set())


def first_meta(book: Any, field: str) -> str | None:
    values = book.get_metadata("DC", field)
    return " ".join(str(values[0][0]).split()) if values and values[0][0] else None


def cover_of(book: Any) -> bytes | None:
    """The cover image: the item EPUB 3 marks `cover-image`, else the one EPUB 2's `<meta name="cover">` names."""
    from ebooklib import ITEM_COVER, ITEM_IMAGE

    for item in book.get_items():
        props = getattr(item, "properties", None) or []
        if item.get_type() == ITEM_COVER or (item.get_type() == ITEM_IMAGE and "cover-image" in props):
            return bytes(item.get_content())
    for _, attrs in book.get_metadata("OPF", "meta"):  # <meta name="cover" content="the image's id">
        if (attrs or {}).get("name") != "cover":
            continue
        item = book.get_item_with_id(attrs.get("content", ""))
        if item is not None and item.get_type() in (ITEM_IMAGE, ITEM_COVER):
            return bytes(item.get_content())
    return None
