"""HTML (and EPUB's XHTML) as the lines a reader would read aloud, with headings marked.

Left out: scripts, styles, navigation (`nav`, role `navigation`: Sphinx's "next / previous" bars),
figures' images, footnote and endnote bodies (`aside` or
sections typed footnote / endnote / rearnote, roles doc-footnote / doc-endnote(s)), and the markers
that point at them: links typed `noteref` (or role `doc-noteref`), superscripts that are only a
short number or symbol (¹, *, †), and links within the page whose text is only such a marker (SiSU
numbers each paragraph so). Block elements end a line; inline ones (emphasis, links) keep
their text in the flow.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

from bs4 import BeautifulSoup, Tag

from barkserve.books.model import as_sentence
from barkserve.errors import BookTooLarge, InvalidBook

HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLOCKS = (
    *HEADINGS,
    *("p", "div", "section", "article", "li", "blockquote", "pre", "tr", "dt", "dd", "figcaption", "br", "hr"),
)
NOTE_TYPES = ("footnote", "footnotes", "endnote", "endnotes", "rearnote", "rearnotes", "note")
NOTE_ROLES = ("doc-footnote", "doc-endnote", "doc-endnotes", "doc-noteref")
# Tags one HTML document (or EPUB file) may have: a novel's chapter has a few thousand. BeautifulSoup
# takes seconds and hundreds of MB per hundred thousand, so more is refused before parsing.
MAX_TAGS = 100_000
# How deeply elements may nest: books nest a few dozen levels. BeautifulSoup's edits walk to a tag's last
# descendant, so the time to read a document grows with the square of its depth (8,000 nested <div>
# took 16.5 s): deeper documents are refused right after parsing (which is linear).
MAX_DEPTH = 512
MARK = 0  # the "level" of a line that marks an anchor (see html_lines)
CODE = -1  # the "level" of a line of a code listing or a table (see html_lines)
MARKER = re.compile(r"\s*(?:\d{1,4}|[ivxlcdm]{1,6}|[a-z]|[*†‡§¶#]+)\s*", re.IGNORECASE)
# A DOCTYPE's internal subset (`<!DOCTYPE html [<!ENTITY ...>]>`) at the start of a document: where it
# starts (after the "[") and where it ends ("]>").
SUBSET_START = re.compile(r"\s*(?:<\?xml[^>]*>\s*)?<!DOCTYPE[^\[>]*\[", re.IGNORECASE)
SUBSET_END = re.compile(r"\]\s*>")


def soup_of(data: bytes | str) -> BeautifulSoup:
    """Parse (X)HTML leniently; bytes that are no HTML at all, or over MAX_TAGS tags, are an InvalidBook."""
    from bs4 import XMLParsedAsHTMLWarning

    tags = data.count(b"<") if isinstance(data, bytes) else data.count("<")  # an upper bound on the tags
    if tags > MAX_TAGS:
        raise BookTooLarge(
            f"an HTML document of the book has {tags:,} tags; books are read with up to {MAX_TAGS:,} a document "
            "(split a long one into several)"
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML read leniently, on purpose
            soup = BeautifulSoup(without_internal_subset(data), "lxml")
    except Exception as exc:  # lxml's errors have several types; all mean "not readable HTML"
        raise InvalidBook(f"cannot read the HTML: {exc}") from exc
    check_depth(soup)
    return soup


def without_internal_subset(data: bytes | str) -> bytes | str:
    """The document with its DOCTYPE's internal subset left out, which the HTML parser would read as
    text ("]>"). Its declarations (DocBook's `<!ENTITY nbsp ...>`, or an entity naming a local file)
    are never used: the HTML parser expands no entity that a document declares.
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data  # a character a byte: same positions
    start = SUBSET_START.match(text)
    end = SUBSET_END.search(text, start.end()) if start else None
    if start is None or end is None:
        return data
    keep, resume = start.end() - 1, end.end() - 1  # keeps "<!DOCTYPE html" and its ">"
    if isinstance(data, bytes):
        return data[:keep] + data[resume:]
    return data[:keep] + data[resume:]


def check_depth(soup: BeautifulSoup) -> None:
    """Refuse a document whose elements nest deeper than MAX_DEPTH (one pass, no recursion)."""
    pending: list[tuple[Tag, int]] = [(soup, 0)]
    while pending:
        tag, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidBook(
                f"an HTML document of the book nests its elements more than {MAX_DEPTH} deep; "
                "books nest a few dozen levels (flatten the markup)"
            )
        pending.extend((child, depth + 1) for child in tag.contents if isinstance(child, Tag))


def epub_types(tag: Tag) -> set[str]:
    """The `epub:type` values of a tag (the attribute keeps its prefix with the lxml parser)."""
    raw = tag.get("epub:type")
    return set(str(raw).split()) if raw else set()


def drop_notes(soup: BeautifulSoup) -> None:
    """Remove what is not read aloud: code, navigation, note bodies and note markers."""
    for tag in soup.find_all(["script", "style", "nav", "head", "img", "svg", "math", "object", "iframe"]):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed:
            continue
        role = str(tag.get("role") or "")
        if epub_types(tag) & {*NOTE_TYPES, "noteref"} or role in NOTE_ROLES or role == "navigation":
            tag.decompose()
        elif tag.name == "a" and str(tag.get("href") or "").startswith("#") and MARKER.fullmatch(tag.get_text()):
            tag.decompose()  # a link in the page that is only a number: a note marker or a paragraph number (SiSU)
    for sup in soup.find_all("sup"):
        if not sup.decomposed and (sup.find("a") is not None or MARKER.fullmatch(sup.get_text())):
            sup.decompose()


def html_lines(
    data: bytes | str, marks: Mapping[str, str] | None = None, mark_code: bool = False
) -> tuple[list[tuple[int | None, str]], str | None]:
    """The readable lines of an HTML document, headings with their level, and its <title>.

    `marks` maps element ids to labels: where such an element starts, a line `(MARK, label)` stands
    (an id inside a heading marks the heading), so a caller can split the text at the anchors that
    a table of contents points at. With `mark_code`, the lines of code listings and tables (`pre`,
    `table`) have the level CODE instead of None (they are read all the same; the plan flags
    chapters made mostly of them).
    """
    soup = soup_of(data)
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else None
    drop_notes(soup)
    targets = anchor_targets(soup, marks or {})
    # Markers go inside the tags: `replace_with` and `insert_after` look the tag up among its siblings,
    # which makes a document of many blocks quadratic.
    for heading in soup.find_all(HEADINGS):
        text = " ".join(heading.get_text(" ").split())
        heading.string = f"\n\x00{heading.name[1]}\x00{text}\n"
    for block in soup.find_all(BLOCKS):
        block.append("\n")
    for tag, label in targets:
        tag.insert(0, f"\n\x01{label}\n")
    if mark_code:
        for block in soup.find_all(["pre", "table"]):
            if block.find_parent(["pre", "table"]) is None:
                block.insert(0, "\n\x02\n")
                block.append("\n\x03\n")
    lines: list[tuple[int | None, str]] = []
    in_code = 0
    for raw in soup.get_text().split("\n"):
        line = " ".join(raw.split())
        if line in ("\x02", "\x03"):
            in_code += 1 if line == "\x02" else -1
        elif line.startswith("\x01"):
            lines.append((MARK, line[1:]))
        elif line and in_code > 0 and not line.startswith("\x00"):
            lines.append((CODE, line))
        elif line.startswith("\x00"):
            _, level, text = line.split("\x00", 2)
            if text.strip():
                lines.append((int(level), text.strip()))
        elif line:
            lines.append((None, line))
    return lines, title or None


def anchor_targets(soup: BeautifulSoup, marks: Mapping[str, str]) -> list[tuple[Tag, str]]:
    """The elements `marks` names by id (or `<a name>`), each moved up to the heading it is inside."""
    if not marks:
        return []
    found: list[tuple[Tag, str]] = []
    for tag in soup.find_all(True):
        key = tag.get("id") or (tag.get("name") if tag.name == "a" else None)
        if key is None or str(key) not in marks:
            continue
        heading = tag if tag.name in HEADINGS else tag.find_parent(HEADINGS)
        found.append((heading or tag, marks[str(key)]))
    return found


def html_text(data: bytes | str) -> tuple[str, str | None]:
    """The readable text of an HTML document (one block a line, headings as sentences) and its first heading."""
    lines, _ = html_lines(data)
    heading = next((t for level, t in lines if level is not None), None)
    return "\n".join(t if level is None else as_sentence(t) for level, t in lines), heading
