"""Books written in-test: EPUB (ebooklib, the library barkserve reads with), PDF (fpdf2 / pypdf), text."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

CHAPTERS = (
    ("The Harbour", "The boats came in at dawn. [laughs] Nobody expected the storm."),
    ("The Storm", "Rain fell for three days. The village waited by the fires."),
    ("The Return", "When the sky cleared, the sailors walked home. It was over."),
)


def cover_jpeg() -> bytes:
    """A small real JPEG image, encoded with PyAV (no image library needed)."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="image2pipe") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), (200, 40, 40), np.uint8), format="rgb24")
        for packet in stream.encode(frame.reformat(format="yuvj420p")):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def make_epub(
    path: Path,
    chapters: tuple[tuple[str, str], ...] = CHAPTERS,
    title: str = "Storm Over the Harbour",
    author: str = "Ann Writer",
    cover: bool = True,
    extra_front: bool = True,
    footnote: bool = True,
    continuation: str | None = None,
) -> Path:
    """An EPUB 3 with a cover, a copyright page (front matter) and `chapters`, one document each;
    `continuation` is the text of a document after the first chapter's that the contents do not list."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("test-book-1")
    book.set_title(title)
    book.set_language("en")
    book.add_author(author)
    if cover:
        book.set_cover("cover.jpg", cover_jpeg(), create_page=True)
    spine: list[object] = ["nav"]
    if extra_front:
        rights = epub.EpubHtml(title="Copyright", file_name="copyright.xhtml", lang="en")
        rights.content = (
            '<html><body><section epub:type="copyright-page"><p>Copyright 2026. All rights reserved.</p>'
            "</section></body></html>"
        )
        book.add_item(rights)
        spine.append(rights)
    docs = []
    for i, (name, text) in enumerate(chapters, 1):
        doc = epub.EpubHtml(title=name, file_name=f"chap_{i}.xhtml", lang="en")
        note = ""
        if footnote and i == 1:
            note = (
                '<sup><a epub:type="noteref" href="#n1">1</a></sup>'
                '<aside epub:type="footnote" id="n1"><p>A note that is not read.</p></aside>'
            )
        # A chapter without text is a picture only (as a part's title page can be).
        body = f"<h1>{name}</h1><p>{text}{note}</p>" if text else '<img src="cover.jpg" alt=""/>'
        doc.content = f"<html><body>{body}</body></html>"
        book.add_item(doc)
        docs.append(doc)
        spine.append(doc)
        if continuation is not None and i == 1:
            more = epub.EpubHtml(title="more", file_name="chap_1b.xhtml", lang="en")
            more.content = f"<html><body><p>{continuation}</p></body></html>"
            book.add_item(more)
            spine.append(more)
    pairs = enumerate(zip(docs, chapters, strict=True))
    book.toc = tuple(epub.Link(d.file_name, name, f"c{i}") for i, (d, (name, _)) in pairs)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = spine
    epub.write_epub(str(path), book)
    return path


def add_encryption(path: Path) -> Path:
    """The EPUB with an encryption.xml that encrypts a chapter (as DRM does)."""
    encryption = (
        '<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        '<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
        '<enc:CipherData><enc:CipherReference URI="EPUB/chap_1.xhtml"/></enc:CipherData>'
        "</enc:EncryptedData></encryption>"
    )
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("META-INF/encryption.xml", encryption)
    return path


def make_pdf(path: Path, pages: list[str], title: str = "A Printed Book", outline: bool = True) -> Path:
    """A PDF with a text layer (fpdf2): one page per entry, a running head and a page number on each,
    and an outline entry per page when `outline`."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_author("Pat Printer")
    pdf.set_font("Helvetica", size=12)
    for number, text in enumerate(pages, 1):
        pdf.add_page()
        heading = text.split(".")[0]
        if outline:
            pdf.start_section(heading)
        pdf.cell(0, 10, "A PRINTED BOOK", new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 10, text)
        pdf.set_y(-20)
        pdf.cell(0, 10, str(number))
    pdf.output(str(path))
    return path


def make_blank_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages have no text layer (as a scan without OCR)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    with path.open("wb") as f:
        writer.write(f)
    return path


def make_epub2(path: Path) -> Path:
    """An EPUB 2 written by hand as the zip it is: NCX contents, a guide naming the cover and the
    contents page, `<meta name="cover">`, and a chapter split over two files."""
    docs = {
        "cover.xhtml": '<html><body><img src="cover.jpg"/></body></html>',
        "toc.xhtml": "<html><body><h1>Contents</h1><p>One ... 1</p></body></html>",
        "one.xhtml": "<html><body><h2>Part One</h2><p>It began.</p></body></html>",
        "one_b.xhtml": "<html><body><p>It went on.</p></body></html>",
        "two.xhtml": "<html><body><h2>Part Two</h2><p>It ended.</p></body></html>",
    }
    manifest = "".join(f'<item id="{n[:-6]}" href="{n}" media-type="application/xhtml+xml"/>' for n in docs)
    spine = "".join(f'<itemref idref="{n[:-6]}"/>' for n in docs)
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="id">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Old Format</dc:title>'
        '<dc:creator>Bea Author</dc:creator><dc:identifier id="id">x</dc:identifier><dc:language>en</dc:language>'
        '<meta name="cover" content="cover-img"/></metadata>'
        f'<manifest>{manifest}<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
        '<item id="cover-img" href="cover.jpg" media-type="image/jpeg"/></manifest>'
        f'<spine toc="ncx">{spine}</spine>'
        '<guide><reference type="cover" href="cover.xhtml" title="Cover"/>'
        '<reference type="toc" href="toc.xhtml" title="Contents"/></guide></package>'
    )
    points = "".join(
        f'<navPoint id="p{i}" playOrder="{i}"><navLabel><text>{t}</text></navLabel><content src="{h}"/></navPoint>'
        for i, (t, h) in enumerate([("Part One", "one.xhtml"), ("Part Two", "two.xhtml#start")], 1)
    )
    ncx = (
        '<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
        f"<head/><docTitle><text>Old Format</text></docTitle><navMap>{points}</navMap></ncx>"
    )
    container = (
        '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", container)
        archive.writestr("OEBPS/content.opf", opf)
        archive.writestr("OEBPS/toc.ncx", ncx)
        archive.writestr("OEBPS/cover.jpg", cover_jpeg())
        for name, body in docs.items():
            archive.writestr(f"OEBPS/{name}", body)
    return path
