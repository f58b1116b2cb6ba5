"""Where each caption of a chapter is in the book's XHTML, and the element that marks it there.

The text read aloud is found again in the documents: their text nodes are walked in order, leaving out
what the reader (`books.html`) leaves out (scripts, navigation, notes and their markers), and each
caption's characters other than white space are matched to the documents' in order. A caption's text
comes from the same documents, so the two agree but for a heading's added full stop (`as_sentence`)
and Bark's cues; the matching skips those and resynchronises on the next characters.

A caption is wrapped in a `<span id>` when it starts and ends in the text of one element, with only
inline elements between (its text and markup stay as they are: the elements move into the span). Else
(a sentence from inside `<em>` to after it, or over two paragraphs) the paragraph it starts in (the
nearest block) gets the id, and every caption in that paragraph shares one `<par>`: a paragraph-level
overlay. A caption over two documents is marked in the first one.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from lxml import etree

from barkserve.books.html import BLOCKS, MARKER, NOTE_ROLES, NOTE_TYPES
from barkserve.books.model import CLOSING
from barkserve.books.opf import OPS_NS, XHTML_NS

UNREAD_TAGS = {"script", "style", "nav", "head", "img", "svg", "math", "object", "iframe"}
# Elements a <span> may not hold (flow content) or that hold no text of their own: a caption over one
# of them is marked at its paragraph.
BLOCK_TAGS = (set(BLOCKS) - {"br"}) | {
    *("ul", "ol", "dl", "table", "thead", "tbody", "tfoot", "td", "th", "caption", "figure", "header"),
    *("footer", "main", "aside", "body", "html", "hgroup", "address", "details", "summary", "form"),
    *("fieldset", "colgroup", "nav", "menu"),
}
# Elements whose own text a <span> may not stand in.
NO_SPAN = {"ul", "ol", "dl", "table", "thead", "tbody", "tfoot", "tr", "colgroup", "html", "head", "hgroup", "menu"}
# Characters of a caption looked for ahead in the documents when the next one does not match.
PROBE = 12
# How far ahead (characters) a caption's next characters are looked for before they count as not in the book.
RESYNC = 4000
ID_PREFIX = "bs-ra-"
Slot = tuple[etree._Element, bool]  # a text node: (element, False) its text, (element, True) its tail


def local(element: etree._Element) -> str:
    """The element's name without namespace ('' for comments and processing instructions)."""
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def unread(element: etree._Element) -> bool:
    """Whether the reader leaves the element (and all in it) out, as `books.html.drop_notes` does."""
    name = local(element)
    if not name or name in UNREAD_TAGS:
        return True
    types = set((element.get(f"{{{OPS_NS}}}type") or "").split())
    role = element.get("role") or ""
    if types & {*NOTE_TYPES, "noteref"} or role in NOTE_ROLES or role == "navigation":
        return True
    if name == "a" and (element.get("href") or "").startswith("#"):
        return MARKER.fullmatch("".join(element.itertext())) is not None
    if name == "sup":
        inner = element.find(f".//{{{XHTML_NS}}}a")
        return inner is not None or MARKER.fullmatch("".join(element.itertext())) is not None
    return False


def text_slots(body: etree._Element) -> list[Slot]:
    """The text nodes read aloud under `body`, in document order (no recursion: books nest deeply)."""
    slots: list[Slot] = [(body, False)] if body.text else []
    pending: list[tuple[bool, etree._Element]] = [(False, c) for c in reversed(body)]
    while pending:
        is_tail, node = pending.pop()
        if is_tail:
            if node.tail:
                slots.append((node, True))
            continue
        pending.append((True, node))  # its tail, after its children
        if isinstance(node.tag, str) and not unread(node):
            if node.text:
                slots.append((node, False))
            pending.extend((False, c) for c in reversed(node))
    return slots


def get_text(slot: Slot) -> str:
    element, tail = slot
    return (element.tail if tail else element.text) or ""


def set_text(slot: Slot, value: str) -> None:
    element, tail = slot
    if tail:
        element.tail = value or None
    else:
        element.text = value or None


def container(slot: Slot) -> etree._Element:
    """The element whose content the text node is in."""
    element, tail = slot
    return element.getparent() if tail else element


@dataclass
class Document:
    """One XHTML document of the book, parsed, with its text nodes read aloud."""

    path: str
    root: etree._Element
    slots: list[Slot] = field(default_factory=list)

    @classmethod
    def of(cls, path: str, root: etree._Element) -> Document:
        body = root.find(f"{{{XHTML_NS}}}body")
        return cls(path, root, text_slots(body) if body is not None else [])


@dataclass
class Stream:
    """The documents' characters read aloud, without white space, and where each one is."""

    chars: str
    doc: array[int]
    slot: array[int]
    offset: array[int]

    @classmethod
    def of(cls, documents: Sequence[Document]) -> Stream:
        chars: list[str] = []
        doc, slot, offset = array("i"), array("i"), array("i")
        for d, document in enumerate(documents):
            for s, node in enumerate(document.slots):
                for o, c in enumerate(get_text(node)):
                    if not c.isspace():
                        chars.append(c)
                        doc.append(d)
                        slot.append(s)
                        offset.append(o)
        return cls("".join(chars), doc, slot, offset)


def compact(text: str) -> str:
    return "".join(text.split())


def match(stream: str, pos: int, wanted: str) -> tuple[list[int], int]:
    """Where each character of `wanted` is in `stream`, from `pos` on (-1: not there), and the position after.

    A character that does not match is one the page lacks (a heading's added full stop) when the
    characters after it match here; else it is looked for with the PROBE characters after it, up to
    RESYNC ahead (text the reader left out is skipped); not found, it counts as not there.
    """
    out: list[int] = []
    i, n, end = 0, len(wanted), len(stream)
    while i < n:
        c = wanted[i]
        if pos < end and stream[pos] == c:
            out.append(pos)
            pos, i = pos + 1, i + 1
            continue
        if stream.startswith(wanted[i + 1 : i + 1 + PROBE], pos):
            out.append(-1)  # a character the page lacks (a heading's added full stop)
            i += 1
            continue
        probe = wanted[i : i + PROBE]
        found = stream.find(probe, pos, pos + RESYNC + len(probe))
        if found < 0:
            out.append(-1)
            i += 1
        else:
            pos = found
    return out, pos


def anchor(stream: str, pos: int, texts: Sequence[str]) -> int:
    """Where a chapter whose captions are `texts` starts in `stream`, from `pos` on (-1: not found)."""
    first = compact(texts[0]).rstrip(CLOSING) if texts else ""
    probes = [first + compact(texts[1])[:16]] if len(texts) > 1 else []
    for probe in [*probes, first[:32]]:
        if probe:
            found = stream.find(probe, pos)
            if found >= 0:
                return found
    return -1


@dataclass
class Unit:
    """A caption (or a word of one) to mark: its chapter, audio times and characters' places in the stream."""

    chapter: int
    start: float
    end: float
    places: list[int]


@dataclass
class Par:
    """One `<par>` of a document's overlay: the id of its text there, its chapter and audio range."""

    text_id: str
    chapter: int
    start: float
    end: float


@dataclass
class Marked:
    """What marking found: each document's pars in order, and the warnings."""

    pars: list[list[Par]]
    warnings: list[str]
    fallback_paragraphs: int = 0
    missing_units: int = 0


def mark(documents: Sequence[Document], stream: Stream, units: Sequence[Unit]) -> Marked:
    """Wrap each unit's text in the documents (or mark its paragraph) and list the pars per document."""
    placed: list[list[tuple[Unit, Slot, int, Slot, int]]] = [[] for _ in documents]
    missing = 0
    for unit in units:
        found = [p for p in unit.places if p >= 0]
        if not found:
            missing += 1
            continue
        d = stream.doc[found[0]]
        inside = [p for p in found if stream.doc[p] == d]  # a caption over two files: its first one's part
        a, b = inside[0], inside[-1]
        slots = documents[d].slots
        placed[d].append((unit, slots[stream.slot[a]], stream.offset[a], slots[stream.slot[b]], stream.offset[b] + 1))
    result = Marked([], [], missing_units=missing)
    for document, units_here in zip(documents, placed, strict=True):
        pars, fallbacks = _mark_document(document, units_here)
        result.pars.append(pars)
        result.fallback_paragraphs += fallbacks
        if fallbacks:
            result.warnings.append(
                f"{document.path}: {fallbacks} paragraph(s) are highlighted whole: their sentences cross "
                "inline markup (or paragraphs) in ways a <span> cannot wrap"
            )
    if missing:
        result.warnings.append(f"{missing} caption(s) were not found in the book's text; they have no highlight")
    return result


def _mark_document(document: Document, units: list[tuple[Unit, Slot, int, Slot, int]]) -> tuple[list[Par], int]:
    """Wrap the units of one document (the last first, so earlier text nodes stay where they were)."""
    used = {str(i) for i in document.root.xpath("//@id")}
    counter = iter(range(1, 10**9))

    def new_id() -> str:
        while (name := f"{ID_PREFIX}{next(counter)}") in used:
            pass
        used.add(name)
        return name

    fallback = {_fallback(a, b) for _, a, _, b, _ in units if not _wrappable(a, b)}
    targets: list[etree._Element | None] = []
    for _, a, _, _, _ in units:
        outer = None
        for node in [container(a), *container(a).iterancestors()]:
            if node in fallback:
                outer = node  # the outermost marked paragraph around it
        targets.append(outer)
    ids: list[str] = []
    for target in targets:  # ids numbered in reading order
        if target is not None and target.get("id") is None:
            target.set("id", new_id())
        ids.append(new_id() if target is None else str(target.get("id")))
    for k in range(len(units) - 1, -1, -1):
        _, a, oa, b, ob = units[k]
        if targets[k] is None:
            _wrap(a, oa, b, ob, ids[k])
    pars: list[Par] = []
    for (unit, *_), text_id in zip(units, ids, strict=True):
        if pars and pars[-1].text_id == text_id and pars[-1].chapter == unit.chapter:
            pars[-1].end = max(pars[-1].end, unit.end)
        else:
            pars.append(Par(text_id, unit.chapter, unit.start, unit.end))
    return pars, len(fallback)


def _wrappable(a: Slot, b: Slot) -> bool:
    """Whether a span can hold the text from slot `a` to slot `b`: one element's content, inline between."""
    parent = container(a)
    if parent is not container(b) or local(parent) in NO_SPAN:
        return False
    return all(local(c) not in BLOCK_TAGS for c in _between(a, b) if isinstance(c.tag, str))


def _between(a: Slot, b: Slot) -> list[etree._Element]:
    """The children of the container that lie between text node `a` and the end of text node `b`."""
    parent = container(a)
    first = 0 if not a[1] else parent.index(a[0]) + 1
    last = 0 if not b[1] else parent.index(b[0]) + 1
    return list(parent)[first:last]


def _wrap(a: Slot, oa: int, b: Slot, ob: int, name: str) -> None:
    """Wrap the text from (`a`, `oa`) to (`b`, `ob`) in `<span id=name>`: the same text, in the same order."""
    parent = container(a)
    span = etree.Element(f"{{{XHTML_NS}}}span", id=name)
    moved = _between(a, b)
    index = 0 if not a[1] else parent.index(a[0]) + 1
    text_a = get_text(a)
    if a == b:
        span.text, span.tail = text_a[oa:ob] or None, text_a[ob:] or None
        set_text(a, text_a[:oa])
    else:
        text_b = get_text(b)
        span.text = text_a[oa:] or None
        set_text(a, text_a[:oa])
        for child in moved:  # append() moves the child with its tail
            span.append(child)
        span.tail = text_b[ob:] or None
        set_text((b[0], True), text_b[:ob])
    parent.insert(index, span)


def _fallback(a: Slot, b: Slot) -> etree._Element:
    """The paragraph a caption that no span can hold is marked at: the one around it, or (for a caption
    over several paragraphs) the one it starts in, so that the paragraphs after it keep their spans."""
    return _block(container(a))


def _block(element: etree._Element) -> etree._Element:
    """The paragraph around an element: itself or its nearest block ancestor."""
    node = element
    while local(node) not in BLOCK_TAGS and node.getparent() is not None:
        node = node.getparent()
    return node
