"""Quoted speech in a chapter, as offsets into its text, by the conventions of the book's language.

Paired marks ("…", “…”, «…», „…“, ‹…›, 「…」) and, in French, Spanish, Italian, Russian, Polish and
Portuguese, dialogue paragraphs that open with a dash (or Project Gutenberg's "--"): the speech runs to
the next dash that opens a narrator's aside, and on after the aside's closing dash. `check_verbatim` is
the proof that a full cast reads the text as it is: the pieces cut at these offsets join back to it byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from barkserve.errors import CastTextChanged

# Paired quotation marks by language (open, close); straight quotes pair up in order within a paragraph.
PAIRS = {
    "en": [("“", "”"), ('"', '"')],
    "de": [("„", "“"), ("»", "«"), ("“", "”"), ('"', '"')],
    "fr": [("«", "»"), ("“", "”"), ('"', '"')],
    "ru": [("«", "»"), ("„", "“"), ("“", "”"), ('"', '"')],
    "pl": [("„", "”"), ("«", "»"), ("»", "«"), ('"', '"')],
    "es": [("«", "»"), ("“", "”"), ('"', '"')],
    "it": [("«", "»"), ("“", "”"), ('"', '"')],
    "pt": [("«", "»"), ("“", "”"), ('"', '"')],
    "ja": [("「", "」"), ("『", "』"), ("“", "”")],
    "zh": [("「", "」"), ("『", "』"), ("“", "”")],
}
PAIRS_DEFAULT = [("“", "”"), ("«", "»"), ("„", "“"), ("‹", "›"), ('"', '"')]
DASH_LANGUAGES = {"fr", "es", "it", "ru", "pl", "pt"}
DASH = "—–"
# Project Gutenberg's plain texts write the dash as "--".
DASH_LINE = re.compile(rf"[ \t]*(?:[{DASH}]|--)")
# A dash that opens or closes a narrator's aside inside a dialogue line: ", — dit-il, —" / "— сказал он. —".
# Spanish writes them against the words ("—preguntó Juan—."): a dash after a space before a word, or after
# a word before a space or a stop.
ASIDE_DASH = re.compile(rf"(?<=[\s,.!?…;])[{DASH}](?=[\s\w])|(?<=\w)[{DASH}](?=[\s.,;:])")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Quote:
    """Quoted speech at `text[start:end]` (its marks included) in paragraph `paragraph` of a chapter."""

    start: int
    end: int
    paragraph: int
    speaker: str | None = None  # None: not attributed (read by the narrator)
    evidence: str = ""  # the rule and the words that attributed it
    gender: str | None = None  # "male" / "female" when the tag says it (a title, a pronoun, a Russian verb)


def paragraphs(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each paragraph: blank-line separated, or one per line when a text has no blank lines."""
    pattern = PARAGRAPH_BREAK if PARAGRAPH_BREAK.search(text) else re.compile(r"\n")
    spans, start = [], 0
    for match in pattern.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def find_quotes(text: str, language: str | None) -> list[Quote]:
    """The quoted speech of a chapter, in order, without overlaps."""
    pairs = PAIRS.get(language or "", PAIRS_DEFAULT)
    out: list[Quote] = []
    for number, (start, end) in enumerate(paragraphs(text)):
        if (language in DASH_LANGUAGES or language is None) and DASH_LINE.match(text, start):
            out += _dash_quotes(text, start, end, number)
            continue
        out += _paired_quotes(text, start, end, number, pairs)
    return out


def _paired_quotes(text: str, start: int, end: int, number: int, pairs: list[tuple[str, str]]) -> list[Quote]:
    out: list[Quote] = []
    pos = start
    while pos < end:
        found = [(text.find(o, pos, end), o, c) for o, c in pairs]
        found = [f for f in found if f[0] >= 0]
        if not found:
            break
        at, opening, closing = min(found)
        close = text.find(closing, at + 1, end)
        # A quote left open runs to its paragraph's end (the next paragraph reopens it, as English does).
        stop = end if close < 0 else close + 1
        if text[at + 1 : stop].strip(opening + closing + " "):
            out.append(Quote(at, stop, number))
        pos = stop
    return out


def _dash_quotes(text: str, start: int, end: int, number: int) -> list[Quote]:
    """A dialogue line: speech from the opening dash, asides between dash pairs read by the narrator."""
    out: list[Quote] = []
    opening = DASH_LINE.match(text, start)
    assert opening is not None
    speech = opening.start() + len(opening.group()) - len(opening.group().lstrip(" \t"))
    dashes = [m.start() for m in ASIDE_DASH.finditer(text, opening.end(), end)]
    while True:
        stop = dashes.pop(0) if dashes else end
        if text[speech:stop].strip(DASH + " "):
            out.append(Quote(speech, stop, number))
        if not dashes:
            break
        speech = dashes.pop(0)  # the aside ends at the next dash, where the speech goes on
    return out


def check_verbatim(text: str, pieces: Sequence[str]) -> None:
    """Raise CastTextChanged unless `pieces` join to `text` exactly (compared as UTF-8 bytes)."""
    if "".join(pieces).encode("utf-8") != text.encode("utf-8"):
        raise CastTextChanged(
            "the full cast's lines do not join back to the chapter's text; this is a bug in barkserve's "
            "attribution: read the book without --cast and report it"
        )
