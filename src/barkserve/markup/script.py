"""A text with its markup read: what is shown (captions), how it is cut, and what Bark is given.

A `Script` is the normalized text (`text.normalize_text` of what captions show) in runs: each run is
spoken in one voice at one rate and ends with a pause (a `[pause]` tag, an SSML `<break>`, `</p>`) or
a change of voice or rate. `Replacement`s say parts of the text differently (an SSML `<sub alias>`,
a `<say-as>`) or not at all (the pause tags themselves). Plain text keeps every character: its only
markup is `[pause]` / `[pause:1.5s]` / `[pause:300ms]`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from barkserve.errors import InvalidRequest
from barkserve.markup.lexicon import Lexicon, Substitution
from barkserve.markup.normalize import normalize
from barkserve.text import CUE, Chunk, chunk_text, normalize_text

# The longest single pause, and all pauses of one text together, in seconds.
MAX_PAUSE_SEC = 10.0
MAX_TOTAL_PAUSE_SEC = 120.0
# `[pause]` without a length, and SSML's `<break/>` without attributes (strength "medium").
DEFAULT_PAUSE_SEC = 0.5
PAUSE_TAG = re.compile(r"\[pause(?::\s*(\d{1,6}(?:\.\d{1,6})?)\s*(s|ms)?\s*)?\]", re.IGNORECASE)
PAUSE_LIKE = re.compile(r"\[pause\b[^\[\]]*\]", re.IGNORECASE)


@dataclass(frozen=True)
class Run:
    """`normalized[start:end]`, spoken in one voice at one rate, then `pause` seconds of silence."""

    start: int
    end: int
    voice: str | None = None  # a voice name (None: the request's voice)
    speed: float | None = None  # a tempo factor (None: the request's `speed`)
    pause: float | None = None  # None: the usual pause between chunks (none after the last)


@dataclass(frozen=True)
class Replacement:
    """`normalized[start:end]` is said as `said` (nothing, for a pause tag); `source` names the markup."""

    start: int
    end: int
    said: str
    source: str


@dataclass(frozen=True)
class Script:
    """A text read for speech: what captions show, its normalized form in runs, and its replacements."""

    shown: str  # the text captions read (the caller's text; for SSML, its words)
    normalized: str  # normalize_text(shown): chunks are slices of it
    runs: tuple[Run, ...]
    replacements: tuple[Replacement, ...] = ()
    ssml: bool = False


def pause_seconds(amount: str | None, unit: str | None, where: str) -> float:
    """A pause length such as ('1.5', 's') or ('300', 'ms') in seconds, within MAX_PAUSE_SEC."""
    if amount is None:
        return DEFAULT_PAUSE_SEC
    seconds = float(amount) / (1000.0 if (unit or "s").lower() == "ms" else 1.0)
    if seconds > MAX_PAUSE_SEC:
        raise InvalidRequest(f"{where}: a pause is at most {MAX_PAUSE_SEC:g} s; got {seconds:g} s")
    return seconds


def plain_script(text: str) -> Script:
    """Plain text: every character kept, cut after each `[pause]` tag (which is not spoken)."""
    normalized = normalize_text(text)
    return with_pause_tags(Script(text, normalized, (Run(0, len(normalized)),)))


def with_pause_tags(script: Script) -> Script:
    """`script` with its runs cut after each `[pause...]` tag in its text, the tags said as nothing."""
    runs: list[Run] = []
    tags: list[Replacement] = []
    text = script.normalized
    for run in script.runs:
        start = run.start
        for match in PAUSE_LIKE.finditer(text, run.start, run.end):
            tag = PAUSE_TAG.fullmatch(match.group(0))
            if tag is None:
                raise InvalidRequest(
                    f"{match.group(0)!r} at character {match.start()} is not a pause; write [pause] or "
                    "[pause:1.5s] or [pause:300ms]"
                )
            seconds = pause_seconds(tag.group(1), tag.group(2), repr(match.group(0)))
            runs.append(replace(run, start=start, end=match.end(), pause=seconds))
            tags.append(Replacement(match.start(), match.end(), "", "pause"))
            start = match.end()
        runs.append(replace(run, start=start))
    found = [r for r in runs if r.end > r.start or r.pause is not None]
    total = sum(r.pause or 0.0 for r in found)
    if total > MAX_TOTAL_PAUSE_SEC:
        raise InvalidRequest(f"the pauses of a text add up to at most {MAX_TOTAL_PAUSE_SEC:g} s; these are {total:g} s")
    replacements = tuple(sorted((*script.replacements, *tags), key=lambda r: r.start))
    return replace(script, runs=tuple(found), replacements=replacements)


@dataclass(frozen=True)
class Pronouncer:
    """What Bark is given for written text in one language: the lexicon's respellings, then normalization."""

    lexicon: Lexicon | None = None
    normalize: bool = True

    def say(self, text: str, language: str) -> tuple[str, list[Substitution]]:
        """`text` as Bark is given it, and what changed; Bark's cues (`[laughs]`, `♪ ... ♪`) pass unchanged."""
        found: list[Substitution] = []
        if self.lexicon is None and not self.normalize:
            return text, found
        parts, pos = [], 0
        for cue in CUE.finditer(text):
            parts += [self._words(text[pos : cue.start()], language, found), cue.group(0)]
            pos = cue.end()
        parts.append(self._words(text[pos:], language, found))
        return "".join(parts), found

    def _words(self, text: str, language: str, found: list[Substitution]) -> str:
        if self.lexicon is not None:
            text, more = self.lexicon.apply(text, language)
            found += more
        if self.normalize:
            text, more = normalize(text, language)
            found += more
        return text


@dataclass
class Planned:
    """The chunks of a script and what was said differently in each (chunk index, substitution)."""

    chunks: list[Chunk] = field(default_factory=list)
    substitutions: list[tuple[int, Substitution]] = field(default_factory=list)
    lead: float = 0.0  # silence before the first chunk (pauses before anything is said)


def plan_chunks(
    script: Script,
    pronouncer: Pronouncer,
    language_of: Callable[[str | None], str],
    count_tokens: Callable[[str], int],
    first_seconds: float | None = None,
) -> Planned:
    """Cut each run of `script` into chunks Bark can speak, each with what Bark is given (`Chunk.say`).

    A chunk with nothing to say (only pause tags or white space) joins the chunk before it, its pause
    added to that chunk's; before the first spoken chunk, it joins that chunk and its pause becomes
    the lead-in silence. Chunk sizes are measured on what Bark is given, not on what is written.
    """
    text, out = script.normalized, Planned()
    pending_start: int | None = None  # the start of text before the first spoken chunk
    memo: dict[tuple[str, str], str] = {}  # cutting measures the same pieces again and again
    for run in script.runs:
        language = language_of(run.voice)

        def said(piece: str, language: str = language) -> str:
            if (piece, language) not in memo:
                memo[piece, language] = pronouncer.say(piece, language)[0]
            return memo[piece, language]

        first = first_seconds if not out.chunks else None
        pieces = chunk_text(
            text[run.start : run.end],
            count_tokens=lambda s: count_tokens(said(s)),
            language=language,
            first_seconds=first,
            spoken_form=said,
        )
        for piece in pieces:
            a, b = run.start + piece.start, run.start + piece.end
            say, subs = _said(script, pronouncer, language, a, b)
            if not say:
                if out.chunks:
                    out.chunks[-1] = _extended(out.chunks[-1], text, b)
                elif pending_start is None:
                    pending_start = a
                continue
            if pending_start is not None:
                a, pending_start = pending_start, None
            chunk = Chunk(text[a:b], a, b, voice=run.voice, speed=run.speed)
            chunk = replace(chunk, say=None if say == chunk.spoken else say)
            out.substitutions += [(len(out.chunks), s) for s in subs]
            out.chunks.append(chunk)
        if run.pause is not None:
            if out.chunks:
                last = out.chunks[-1]
                out.chunks[-1] = replace(last, pause=(last.pause or 0.0) + run.pause)
            else:
                out.lead += run.pause
    if not out.chunks:
        raise InvalidRequest("the text has nothing to speak besides its markup (pauses, breaks)")
    if out.chunks[-1].end < len(text):  # text with nothing to say after the last spoken chunk
        out.chunks[-1] = _extended(out.chunks[-1], text, len(text))
    if out.lead:
        out.chunks[0] = replace(out.chunks[0], lead=out.lead)
    return out


def _extended(chunk: Chunk, text: str, end: int) -> Chunk:
    """`chunk` covering the text up to `end` (tags or white space with nothing to say), said as before."""
    longer = replace(chunk, text=text[chunk.start : end], end=end, say=chunk.said)
    return replace(longer, say=None) if longer.say == longer.spoken else longer


def _said(script: Script, pronouncer: Pronouncer, language: str, a: int, b: int) -> tuple[str, list[Substitution]]:
    """What Bark is given for `normalized[a:b]`: replacements as they say, the rest pronounced."""
    text, parts, subs, pos = script.normalized, [], [], a
    for rep in script.replacements:
        if rep.end <= a or rep.start >= b:
            continue
        if rep.start < a:  # cut by the chunk before, which says it whole
            pos = max(pos, rep.end)
            continue
        said, found = pronouncer.say(text[pos : rep.start], language)
        parts += [said, rep.said]
        subs += found
        if rep.source != "pause":
            subs.append(Substitution(text[rep.start : rep.end], rep.said, rep.source))
        pos = rep.end
    if pos < b:
        said, found = pronouncer.say(text[pos:b], language)
        parts.append(said)
        subs += found
    return " ".join("".join(parts).split()), subs
