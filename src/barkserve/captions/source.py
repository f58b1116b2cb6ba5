"""The caller's original text behind the normalized text: offsets back, and caption text without cues.

Chunks are slices of `normalize_text(original)`. Captions show the original (its case, punctuation,
decomposed accents, soft hyphens), so every normalized offset is mapped back to where it came from.
"""

from __future__ import annotations

import re
import unicodedata

from barkserve.text import CUE, JOINERS

# Bark's speaker cues (`MAN:`, `WOMAN:` before a line) bias the voice and are not spoken.
SPEAKER = re.compile(r"(?<!\S)(?:MAN|WOMAN):(?!\S)")
# Characters that normalize_text turns into spaces (control characters, line and paragraph separators).
SPACE_LIKE = ("Cc", "Zl", "Zp")


def normalized_offsets(original: str) -> tuple[str, list[int]]:
    """`normalize_text(original)`, and for each of its characters (plus one past the end) the offset
    in `original` where that character comes from.

    NFC is applied per segment: a segment starts at a character that composes with nothing before it
    (combining class 0, and the NFC of the segment so far plus it is the two NFCs side by side), so
    each segment's NFC is its own and the whole is the NFC of `original`.
    """
    pieces: list[tuple[str, int]] = []  # (NFC of a segment, its start in `original`)
    seg_start = 0
    for i in range(1, len(original) + 1):
        if i == len(original) or _starts_segment(original, seg_start, i):
            pieces.append((unicodedata.normalize("NFC", original[seg_start:i]), seg_start))
            seg_start = i
    out: list[str] = []
    offsets: list[int] = []
    space_at: int | None = None  # the first white-space character of a pending run
    for nfc, start in pieces:
        for c in nfc:
            kind = unicodedata.category(c)
            if kind == "Cf" and c not in JOINERS:
                continue
            if kind in SPACE_LIKE or c.isspace():
                space_at = start if space_at is None else space_at
                continue
            if space_at is not None and out:
                out.append(" ")
                offsets.append(space_at)
            space_at = None
            out.append(c)
            offsets.append(start)
    offsets.append(len(original))
    return "".join(out), offsets


def _starts_segment(text: str, seg_start: int, i: int) -> bool:
    """Whether `text[i]` composes with nothing in `text[seg_start:i]` under NFC."""
    c = text[i]
    if c.isascii():  # no composition has an ASCII second character
        return True
    if unicodedata.combining(c):
        return False
    seg = text[seg_start:i]
    return unicodedata.normalize("NFC", seg + c) == unicodedata.normalize("NFC", seg) + unicodedata.normalize("NFC", c)


def caption_text(original: str) -> str:
    """`original` as a caption: Bark's cues (`[laughs]`, `♪ ... ♪`, `MAN:`) removed, control
    characters and line breaks as spaces, white space folded to single spaces. Everything else
    (case, punctuation, soft hyphens, the original Unicode form) is kept."""
    text = SPEAKER.sub(" ", CUE.sub(" ", original))
    text = "".join(" " if unicodedata.category(c) in SPACE_LIKE else c for c in text)
    return " ".join(text.split())
