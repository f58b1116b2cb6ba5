"""Who reads what: the book's voice, per-chapter voices, and inline `[voice:NAME]` tags.

Each chapter starts in its own voice (an override from `chapter_voices`, else the book's voice). A tag
`[voice:NAME]` switches to NAME for the text after it, up to the next tag or the chapter's end; it is
not read aloud. NAME is anything `voice_preset` takes: `v2/de_speaker_3`, `en_speaker_1`, `3`, or a
custom or cloned voice. Bark's own cues (`[laughs]`, `MAN:`, `♪ ... ♪`) are ordinary text and pass
through unchanged. A NAME that is no voice is an error naming the chapter and the line, found before
anything is generated; its line is counted from the chapter's start (its heading is line 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from barkserve.books.model import Book
from barkserve.books.quotes import check_verbatim
from barkserve.errors import InvalidBook, InvalidRequest, InvalidVoice

NEWLINE = "\n"
VOICE_TAG = re.compile(r"\[voice:([^\[\]]*)\]", re.IGNORECASE)


@dataclass(frozen=True)
class Segment:
    """A run of a chapter's text read in one voice (a resolved voice name); tags removed. `speaker`:
    the character whose line it is, in a full cast (None: the narrator)."""

    voice: str
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class Line:
    """A character's line in a full cast: `text[start:end]` of its chapter, read by `voice` (None: the narrator)."""

    start: int
    end: int
    speaker: str
    voice: str | None


@dataclass(frozen=True)
class VoicedChapter:
    title: str
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)


def voice_arg(name: str) -> object:
    """A voice as `voice_preset` takes it: digits are a preset number."""
    name = name.strip()
    return int(name) if name.isascii() and name.isdigit() else name


def parse_chapter_voices(items: object) -> dict[int, str]:
    """`{"2": "v2/en_speaker_1"}` or `["2=v2/en_speaker_1"]` as chapter number (from 1) -> voice."""
    if items is None:
        return {}
    pairs: list[tuple[object, object]]
    if isinstance(items, Mapping):
        pairs = list(items.items())
    elif isinstance(items, list | tuple):
        pairs = []
        for item in items:
            key, sep, name = str(item).partition("=")
            if not sep:
                raise InvalidRequest(f"a chapter voice looks like '2=v2/en_speaker_1'; got {item!r}")
            pairs.append((key, name))
    else:
        raise InvalidRequest(f"chapter_voices must be an object like {{'2': 'v2/en_speaker_1'}}; got {items!r}")
    out: dict[int, str] = {}
    for number, voice in pairs:
        text = str(number).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 6 and int(text) >= 1):
            raise InvalidRequest(f"chapter numbers count from 1; got {number!r}")
        if not isinstance(voice, str | int) or isinstance(voice, bool) or not str(voice).strip():
            raise InvalidRequest(f"chapter {text}'s voice must be a voice name or number; got {voice!r}")
        out[int(text)] = str(voice).strip()
    return out


def voice_book(
    book: Book,
    book_voice: str,
    resolve: Callable[[object], str],
    chapter_voices: Mapping[int, str] | None = None,
    numbers: list[int] | None = None,
    cast: Sequence[Sequence[Line]] | None = None,
) -> list[VoicedChapter]:
    """Split each chapter into voiced segments; `resolve` turns a voice as given into its name.

    `numbers` are the book's chapter numbers of `book.chapters` (when only some were selected), for
    the error messages and for `chapter_voices`, which is numbered like the whole book. `cast` (a full
    cast) gives each of `book.chapters` its characters' lines as offsets into its text: the text there
    that the chapter's own voice would read is read in the line's voice; tags still win.

    Raises:
        InvalidVoice: a voice that is not one, with the chapter and line where it stands.
        InvalidBook: a chapter with nothing to read once the tags are removed.
    """
    numbers = numbers or list(range(1, len(book.chapters) + 1))
    overrides = dict(chapter_voices or {})
    out = []
    for index, (number, chapter) in enumerate(zip(numbers, book.chapters, strict=True)):
        where = f"chapter {number} ({chapter.title!r})"
        start_voice = book_voice
        if number in overrides:
            start_voice = _resolve(resolve, overrides[number], f"{where}, its chapter voice")
        segments: list[Segment] = []
        voice, position = start_voice, 0
        lines = cast[index] if cast is not None else None
        for match in VOICE_TAG.finditer(chapter.text):
            segments += _pieces(chapter.text, position, match.start(), voice, start_voice, lines)
            line = f"line {chapter.text[: match.start()].count(NEWLINE) + 1} of the chapter"
            name = match.group(1).strip()
            if not name:
                raise InvalidVoice(f"{where}, {line}: {match.group(0)} names no voice; write [voice:NAME]")
            voice = _resolve(resolve, name, f"{where}, {line}: {match.group(0)}")
            position = match.end()
        segments += _pieces(chapter.text, position, len(chapter.text), voice, start_voice, lines)
        if lines is not None:  # the characters' lines are the source text, cut: nothing added or lost
            segments = _keep_spaces(segments)
            check_verbatim(VOICE_TAG.sub("", chapter.text), [s.text for s in segments])
        kept = tuple(s for s in segments if s.text.strip())
        if not kept:
            raise InvalidBook(
                f"{where} has nothing to read besides voice tags; remove it or leave it out with chapters"
            )
        out.append(VoicedChapter(chapter.title, _merge(kept)))
    return out


def _resolve(resolve: Callable[[object], str], name: str, where: str) -> str:
    try:
        return resolve(voice_arg(name))
    except InvalidVoice as exc:
        raise InvalidVoice(f"{where}: {exc.message}") from exc


def _pieces(
    text: str, start: int, end: int, voice: str, start_voice: str, lines: Sequence[Line] | None
) -> list[Segment]:
    """`text[start:end]` read in `voice`; with a full cast, and in the chapter's own voice, its lines in theirs."""
    if lines is None or voice != start_voice:
        return [Segment(voice, text[start:end])]
    return [Segment(v or voice, text[a:b], speaker) for speaker, v, a, b in cut(start, end, lines)]


def cut(start: int, end: int, lines: Sequence[Line]) -> list[tuple[str | None, str | None, int, int]]:
    """`text[start:end]` as (speaker, voice, start, end) pieces: the lines inside it in their
    speakers' voices, the rest (speaker and voice None) in between."""
    out: list[tuple[str | None, str | None, int, int]] = []
    position = start
    for line in lines:
        a, b = max(line.start, start), min(line.end, end)
        if b <= a:
            continue
        if a > position:
            out.append((None, None, position, a))
        out.append((line.speaker, line.voice, a, b))
        position = b
    if position < end:
        out.append((None, None, position, end))
    return out


def _keep_spaces(segments: list[Segment]) -> list[Segment]:
    """White space alone between two lines stays with the one before (it is not read, but it is text)."""
    out: list[Segment] = []
    for segment in segments:
        if out and not segment.text.strip():
            out[-1] = Segment(out[-1].voice, out[-1].text + segment.text, out[-1].speaker)
        else:
            out.append(segment)
    return out


def _merge(segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """Neighbouring segments in the same voice as one (a tag repeating the current voice changes nothing)."""
    merged: list[Segment] = []
    for segment in segments:
        if merged and (merged[-1].voice, merged[-1].speaker) == (segment.voice, segment.speaker):
            merged[-1] = Segment(segment.voice, merged[-1].text + segment.text, segment.speaker)
        else:
            merged.append(segment)
    return tuple(merged)
