"""Markup and pronunciation: `[pause]` tags, the SSML subset, lexicons and text normalization.

`read_script` turns a request's text into a `Script` (what captions show, cut into runs with their
voices, rates and pauses); `plan_chunks` cuts it into the chunks Bark speaks, each with what Bark is
given after the lexicon and normalization (`Chunk.say`).
"""

from __future__ import annotations

from collections.abc import Callable

from barkserve.markup.lexicon import Lexicon, Substitution, load_lexicon_file
from barkserve.markup.script import (
    DEFAULT_PAUSE_SEC,
    MAX_PAUSE_SEC,
    MAX_TOTAL_PAUSE_SEC,
    Planned,
    Pronouncer,
    Script,
    plain_script,
    plan_chunks,
)
from barkserve.markup.ssml import is_ssml, parse_ssml

__all__ = [
    "DEFAULT_PAUSE_SEC",
    "MAX_PAUSE_SEC",
    "MAX_TOTAL_PAUSE_SEC",
    "Lexicon",
    "Planned",
    "Pronouncer",
    "Script",
    "Substitution",
    "load_lexicon_file",
    "plan_chunks",
    "read_script",
]


def read_script(
    text: str,
    ssml: bool | None,
    resolve_voice: Callable[[str], str],
    language_of: Callable[[str | None], str],
) -> Script:
    """The script of a request's text: SSML when `ssml` is true, or when it is None and the text starts
    with `<speak>`; otherwise plain text (its `[pause]` tags read, every other character kept)."""
    if ssml is None:
        ssml = is_ssml(text)
    if not ssml:
        return plain_script(text)
    document = text if is_ssml(text) else f"<speak>{text}</speak>"
    return parse_ssml(document, resolve_voice, language_of)
