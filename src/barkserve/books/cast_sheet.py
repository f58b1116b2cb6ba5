"""A book's full cast: its quotes attributed chapter by chapter, the cast sheet (`cast.json`), and a voice per speaker.

The sheet lists each speaker with the names that stand for them (`aliases`), a gender where the book
says it, how many lines they have, the voice that reads them and the evidence of the first
attributions. `barkserve book --plan` writes it; the user edits it (voices, aliases, merging two
names into one) and gives it back with `--cast cast.json`. Speakers the sheet does not name are read
by the narrator; a voice the server does not have is an error before anything is queued.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from barkserve.books.cast import MAX_LABEL_CHARS, attribute, book_genders
from barkserve.books.language import BARK_LANGUAGES
from barkserve.books.model import Book
from barkserve.books.quotes import Quote, find_quotes
from barkserve.books.voices import Line
from barkserve.errors import InvalidRequest, InvalidVoice

SHEET_VERSION = 1
EVIDENCE = 3  # attributions kept per speaker as evidence
MAX_SPEAKERS = 500
# The genders of Suno's Bark presets, speakers 0-9 of each language, as its speaker library lists them.
PRESET_GENDERS = {
    "en": "MMMMMMMMMF", "de": "MMMFMMMMFM", "es": "MMMMMMMMFF", "fr": "MFFMMFMMMM", "hi": "FFMFFMMMMF",
    "it": "MMFMMMMFMF", "ja": "FFMFFFMFMF", "ko": "FMMMMMMMMM", "pl": "MMMMFMFMMF", "pt": "MMMMMMFMMM",
    "ru": "MMMMMFFMMF", "tr": "MMMMFFMMMM", "zh": "MMMMFMFFMM",
}  # fmt: skip
GENDER_LETTER = {"male": "M", "female": "F"}


@dataclass(frozen=True)
class BookCast:
    """Every chapter's attributed quotes (offsets into that chapter's text), and the speakers' genders."""

    chapters: tuple[tuple[Quote, ...], ...]
    genders: dict[str, str | None] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    aliases: dict[str, list[str]] = field(default_factory=dict)  # a speaker's other names

    def counts(self) -> Counter[str]:
        return Counter(q.speaker for quotes in self.chapters for q in quotes if q.speaker is not None)


def cast_book(book: Book, labeler: Callable[[Book, BookCast], BookCast] | None = None) -> BookCast:
    """Find and attribute every chapter's quotes by rules; then, with `labeler` (the LLM pass), its labels."""
    chapters: list[tuple[Quote, ...]] = []
    genders = book_genders("\n\n".join(c.text for c in book.chapters), book.language)
    for chapter in book.chapters:
        quotes = attribute(chapter.text, find_quotes(chapter.text, book.language), book.language, genders)
        chapters.append(tuple(quotes))
    cast = BookCast(tuple(chapters), genders)
    cast = labeler(book, cast) if labeler is not None else cast
    return merge_names(cast)


def merge_names(cast: BookCast) -> BookCast:
    """A bare name as the one titled name it ends ("Darcy" as "Mr. Darcy"; not "Bingley", with both a
    "Mr." and a "Miss Bingley"), its lines counted there and the bare name kept as an alias."""
    names = set(cast.counts())
    canonical: dict[str, str] = {}
    for name in names:
        titled = [n for n in names if n != name and n.endswith(" " + name)]
        if len(titled) == 1:
            canonical[name] = titled[0]
    chapters = tuple(
        tuple(replace(q, speaker=canonical[q.speaker]) if q.speaker in canonical else q for q in quotes)
        for quotes in cast.chapters
    )
    aliases: dict[str, list[str]] = {}
    for bare, full in sorted(canonical.items()):
        aliases.setdefault(full, []).append(bare)
    return replace(cast, chapters=chapters, aliases=aliases)


def language_presets(language: str | None, gender: str | None) -> list[str]:
    """Bark's presets of a language (English when Bark has none), those of `gender` first."""
    lang = language if language in BARK_LANGUAGES else "en"
    genders = PRESET_GENDERS[lang]
    names = [f"v2/{lang}_speaker_{n}" for n in range(10)]
    if gender not in GENDER_LETTER:
        return names
    letter = GENDER_LETTER[gender]
    return [n for n, g in zip(names, genders, strict=True) if g == letter] + [
        n for n, g in zip(names, genders, strict=True) if g != letter
    ]


def make_sheet(cast: BookCast, book: Book, narrator: str, available: Callable[[str], bool]) -> dict[str, Any]:
    """The cast sheet of an attributed book: speakers by line count, each with a voice of the book's
    language (and gender, where stated) other than the narrator's, spread so that speakers differ."""
    counts = cast.counts()
    evidence: dict[str, list[str]] = {}
    for number, quotes in enumerate(cast.chapters, 1):
        text = book.chapters[number - 1].text
        for q in quotes:
            if q.speaker is not None and len(evidence.setdefault(q.speaker, [])) < EVIDENCE:
                words = " ".join(text[q.start : q.end].split())[:60]
                evidence[q.speaker].append(f"chapter {number}: {words} [{q.evidence}]")
    used = Counter({narrator: 1})
    speakers = []
    for name, lines in counts.most_common(MAX_SPEAKERS):
        gender = cast.genders.get(name)
        candidates = [v for v in language_presets(book.language, gender) if v != narrator and available(v)]
        # The least used voice of the preferred ones (the right gender first): speakers spread over voices.
        pool = [v for v in candidates if GENDER_LETTER.get(gender or "") in (None, _gender_of(v))] or candidates
        voice = min(pool, key=lambda v: (used[v], pool.index(v))) if pool else narrator
        used[voice] += 1
        speakers.append(
            {"name": name, "aliases": cast.aliases.get(name, []), "gender": gender, "lines": lines, "voice": voice,
             "evidence": evidence.get(name, [])}
        )  # fmt: skip
    return {"version": SHEET_VERSION, "language": book.language, "narrator": narrator, "speakers": speakers}


def _gender_of(preset: str) -> str | None:
    lang, _, number = preset.removeprefix("v2/").partition("_speaker_")
    genders = PRESET_GENDERS.get(lang)
    return genders[int(number)] if genders and number.isdigit() and int(number) < 10 else None


@dataclass(frozen=True)
class CastSheet:
    """A cast sheet as read back: each name and alias -> its voice (None: the narrator's)."""

    voices: dict[str, str | None]

    def voice_of(self, speaker: str) -> str | None:
        return self.voices.get(speaker) or self.voices.get(_fold(speaker))


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def read_sheet(value: object, resolve: Callable[[object], str]) -> CastSheet:
    """A cast sheet from JSON (text or parsed), every voice resolved now.

    Raises:
        InvalidRequest: not a cast sheet (with what is wrong); InvalidVoice: a speaker's voice the
            server does not have, with the speaker's name.
    """
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidRequest(f"the cast sheet is not JSON ({exc}); give 'auto' or a cast.json") from exc
    if not isinstance(value, Mapping) or not isinstance(value.get("speakers"), list):
        raise InvalidRequest('a cast sheet is an object with a list "speakers" (as `book --plan` writes cast.json)')
    voices: dict[str, str | None] = {}
    for k, speaker in enumerate(value["speakers"]):
        if not isinstance(speaker, Mapping) or not isinstance(speaker.get("name"), str):
            raise InvalidRequest(f'cast sheet speaker {k + 1} must be an object with a "name"; got {speaker!r}')
        name = speaker["name"].strip()
        aliases = speaker.get("aliases") or []
        if not name or len(name) > MAX_LABEL_CHARS or not isinstance(aliases, list):
            raise InvalidRequest(f"cast sheet speaker {k + 1}: a name of 1-{MAX_LABEL_CHARS} characters and a list "
                                 f"of aliases; got {speaker.get('name')!r}, {aliases!r}")  # fmt: skip
        voice = speaker.get("voice")
        resolved = None
        if voice not in (None, "", "narrator"):
            try:
                resolved = resolve(voice)
            except InvalidVoice as exc:
                raise InvalidVoice(f"cast sheet speaker {name!r}: {exc.message}") from exc
        for alias in [name, *aliases]:
            if not isinstance(alias, str) or not alias.strip() or len(alias) > MAX_LABEL_CHARS:
                raise InvalidRequest(
                    f"cast sheet speaker {name!r}: aliases are names of 1-{MAX_LABEL_CHARS} characters; got {alias!r}"
                )
            voices[alias.strip()] = resolved
            voices[_fold(alias)] = resolved
    return CastSheet(voices)


def auto_sheet(sheet: Mapping[str, Any], resolve: Callable[[object], str]) -> CastSheet:
    """The sheet barkserve made itself, read back the same way."""
    return read_sheet(dict(sheet), resolve)


def cast_lines(
    book: Book,
    cast: object,
    labeler: Callable[[Book, BookCast], BookCast] | None,
    narrator: str,
    resolve: Callable[[object], str],
) -> tuple[list[list[Line]], dict[str, Any], list[str]]:
    """A full cast of `book`: each chapter's lines with their voices, the cast sheet, and warnings.

    `cast` is "auto" (the sheet is made here) or a cast sheet, whose voices are checked before the
    book is attributed. A speaker the sheet does not name is read by the narrator.

    Raises:
        InvalidRequest: `cast` is neither; InvalidVoice: a sheet's voice the server does not have.
    """
    given = None
    if cast != "auto":
        if cast is None or isinstance(cast, bool) or not isinstance(cast, str | bytes | Mapping):
            raise InvalidRequest(f'cast must be "auto" or a cast sheet (cast.json); got {cast!r}')
        given = read_sheet(cast, resolve)
    found = cast_book(book, labeler)

    def available(voice: str) -> bool:
        try:
            resolve(voice)
        except InvalidVoice:
            return False
        return True

    sheet = make_sheet(found, book, narrator, available)
    chosen = given if given is not None else read_sheet(sheet, resolve)
    if given is not None:  # the sheet as the job reads it: the user's voices, merged names, line counts
        sheet = view_of(dict(cast if isinstance(cast, Mapping) else json.loads(cast)), found.counts(), narrator)
    lines = [
        [Line(q.start, q.end, q.speaker, chosen.voice_of(q.speaker)) for q in quotes
         if q.speaker is not None and chosen.voice_of(q.speaker) is not None]
        for quotes in found.chapters
    ]  # fmt: skip
    return lines, sheet, list(found.warnings)


def view_of(sheet: dict[str, Any], counts: Counter[str], narrator: str) -> dict[str, Any]:
    """A user's sheet with each speaker's line count as this book has it (their aliases' lines included)."""
    speakers = []
    for speaker in sheet.get("speakers", []):
        names = {_fold(n) for n in [speaker["name"], *(speaker.get("aliases") or [])]}
        lines = sum(n for name, n in counts.items() if _fold(name) in names)
        speakers.append({**speaker, "lines": lines})
    return {**sheet, "narrator": narrator, "speakers": speakers}
