"""Pronunciation lexicons: respellings of whole words, per language, applied once before chunking.

A lexicon is JSON: an object of language code (`en`, `de`, ... or `*` for every language) to an object
of word -> respelling, e.g. `{"en": {"Nguyen": "win", "SQL": "sequel"}, "*": {"barkserve": "bark serve"}}`;
a flat object of word -> respelling (`{"Nguyen": "win"}`) means `*`.

Rules:
- whole words only: `cat` does not change `category`; a word may hold spaces or punctuation (`Dr.`, `C++`).
- case: a word written in lower case matches in any case (`nasa` matches NASA, Nasa, nasa); a word with
  any capital matches only as written (`US` matches US, not us). The respelling is used as written.
- a language's own entry wins over a `*` entry for the same word; longer words win over shorter ones
  that start at the same place (`New York City` before `New York`).
- layers: the server's file, then the API key's lexicon, then the request's `lexicon`; a later layer's
  entry replaces an earlier one for the same language and word.
- applied once, in one pass: a respelling must not contain a word of the lexicon (that would be a loop),
  and words and respellings are bounded (see the constants).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from barkserve.errors import ConfigError, InvalidRequest

MAX_ENTRIES = 2_000
MAX_WORD_CHARS = 64
MAX_SAID_CHARS = 256
ANY_LANGUAGE = "*"
LANGUAGE = re.compile(r"[a-z]{2,3}")
# Markup and cue characters: a respelling that held them would add pauses, tags or cues.
FORBIDDEN = re.compile(r"[\[\]<>♪\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Entry:
    """One respelling: `word` (in `language`, or `*`) is said as `said`; `source` names its layer."""

    language: str
    word: str
    said: str
    source: str = "lexicon:request"

    @property
    def any_case(self) -> bool:
        return self.word == self.word.lower()

    @property
    def key(self) -> tuple[str, str]:
        """What a later layer replaces: the same language and the same word (folded when it matches any case)."""
        return self.language, self.word.lower() if self.any_case else self.word

    def pattern(self) -> str:
        body = r"\s+".join(re.escape(part) for part in self.word.split())
        return rf"(?<!\w)(?i:{body})(?!\w)" if self.any_case else rf"(?<!\w)(?:{body})(?!\w)"


@dataclass(frozen=True)
class Substitution:
    """A piece of text said differently from how it is written: by a lexicon, the normalizer or SSML."""

    original: str
    said: str
    source: str  # "lexicon:<layer>", "normalize:<kind>", "ssml:<element>"

    def to_dict(self) -> dict[str, str]:
        return {"original": self.original, "said": self.said, "source": self.source}


@dataclass(frozen=True)
class Lexicon:
    """Checked entries, in layer order (later entries replace earlier ones with the same key)."""

    entries: tuple[Entry, ...] = ()

    @classmethod
    def from_value(cls, value: object, source: str = "request") -> Lexicon | None:
        """A lexicon from its JSON form (None stays None); a bad one is an `InvalidRequest` naming the entry."""
        if value is None or isinstance(value, Lexicon):
            return value
        lexicon = cls(tuple(_entries(value, source)))
        lexicon.check()
        return lexicon

    def merged(self, other: Lexicon | None) -> Lexicon:
        """This lexicon under `other`: `other`'s entries replace ours with the same language and word."""
        if other is None or not other.entries:
            return self
        replaced = {e.key for e in other.entries}
        merged = Lexicon((*(e for e in self.entries if e.key not in replaced), *other.entries))
        merged.check()
        return merged

    def check(self) -> None:
        """Bounds, and no loops: no respelling contains a word of the lexicon that applies with it."""
        if len(self.entries) > MAX_ENTRIES:
            raise InvalidRequest(f"a lexicon holds at most {MAX_ENTRIES} entries; this one has {len(self.entries)}")
        languages = {e.language for e in self.entries}
        for entry in self.entries:
            for language in languages if entry.language == ANY_LANGUAGE else (entry.language,):
                matcher = self._matcher(language)
                found = matcher[0].search(entry.said) if matcher else None
                if found is None or matcher is None:
                    continue
                other = matcher[1][(found.lastindex or 1) - 1]
                raise InvalidRequest(
                    f"lexicon entry {_name(entry)}: its respelling {entry.said!r} contains the word "
                    f"{other.word!r} of entry {_name(other)}; the lexicon is applied once, so a respelling "
                    "must not contain a word of the lexicon (respell it differently)"
                )

    def to_json(self) -> dict[str, dict[str, str]]:
        """The JSON form: language -> word -> respelling (what `from_value` reads)."""
        out: dict[str, dict[str, str]] = {}
        for entry in self.entries:
            out.setdefault(entry.language, {})[entry.word] = entry.said
        return out

    def for_language(self, language: str) -> tuple[Entry, ...]:
        """The entries that apply to text in `language`: its own, then `*` ones it does not replace."""
        own = [e for e in self.entries if e.language == language]
        taken = {(e.word.lower() if e.any_case else e.word) for e in own}
        shared = [e for e in self.entries if e.language == ANY_LANGUAGE and e.key[1] not in taken]
        return tuple(own + shared)

    def apply(self, text: str, language: str) -> tuple[str, list[Substitution]]:
        """`text` with each whole word of the lexicon respelled, in one pass; and what was replaced."""
        matcher = self._matcher(language)
        if matcher is None:
            return text, []
        regex, entries = matcher
        found: list[Substitution] = []

        def respell(match: re.Match[str]) -> str:
            entry = entries[(match.lastindex or 1) - 1]
            found.append(Substitution(match.group(0), entry.said, entry.source))
            return entry.said

        return regex.sub(respell, text), found

    @cached_property
    def _matchers(self) -> dict[str, tuple[re.Pattern[str], tuple[Entry, ...]] | None]:
        return {}

    def _matcher(self, language: str) -> tuple[re.Pattern[str], tuple[Entry, ...]] | None:
        """One regular expression for the entries of `language`, longest words first (made once)."""
        if language in self._matchers:
            return self._matchers[language]
        entries = tuple(sorted(self.for_language(language), key=lambda e: -len(e.word)))
        found = (re.compile("|".join(f"({e.pattern()})" for e in entries)), entries) if entries else None
        self._matchers[language] = found
        return found


def _entries(value: object, source: str) -> Iterable[Entry]:
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            'a lexicon is a JSON object like {"en": {"Nguyen": "win"}} (or {"Nguyen": "win"} for every '
            f"language); got {type(value).__name__}"
        )
    if all(isinstance(v, str) for v in value.values()):
        value = {ANY_LANGUAGE: value}
    for language, words in value.items():
        if not isinstance(language, str) or not (language == ANY_LANGUAGE or LANGUAGE.fullmatch(language)):
            raise InvalidRequest(f"lexicon languages are codes like 'en' or '*' for every language; got {language!r}")
        if not isinstance(words, Mapping):
            raise InvalidRequest(
                f"lexicon language {language!r} must map words to respellings, like {{'Nguyen': 'win'}}; "
                f"got {type(words).__name__} (do not mix words and languages at the top level)"
            )
        for word, said in words.items():
            yield _entry(language, word, said, source)


def _entry(language: str, word: object, said: object, source: str) -> Entry:
    where = f"{language}:{str(word)[:40]!r}"
    if not isinstance(word, str) or not isinstance(said, str):
        raise InvalidRequest(f"lexicon entry {where}: words and respellings are strings; got {said!r}")
    word, said = " ".join(word.split()), " ".join(said.split())
    if not word or not said:
        raise InvalidRequest(f"lexicon entry {where}: the word and its respelling must not be empty")
    if len(word) > MAX_WORD_CHARS or len(said) > MAX_SAID_CHARS:
        raise InvalidRequest(
            f"lexicon entry {where}: a word is at most {MAX_WORD_CHARS} characters and a respelling at most "
            f"{MAX_SAID_CHARS}; got {len(word)} and {len(said)}"
        )
    for text in (word, said):
        bad = FORBIDDEN.search(text)
        if bad:
            raise InvalidRequest(
                f"lexicon entry {where}: {bad.group(0)!r} is not allowed in a lexicon (no markup, cues or "
                "control characters)"
            )
    if not re.search(r"\w", word):
        raise InvalidRequest(f"lexicon entry {where}: a word needs at least one letter or digit")
    return Entry(language, word, said, f"lexicon:{source}")


def _name(entry: Entry) -> str:
    return f"{entry.language}:{entry.word!r} ({entry.source})"


def load_lexicon_file(path: str | Path) -> Lexicon:
    """The server's lexicon file (JSON, the request's form); a bad file is a `ConfigError` naming it."""
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        lexicon = Lexicon.from_value(data, source="server")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"lexicon_file {str(path)!r} cannot be read as JSON: {exc}") from exc
    except InvalidRequest as exc:
        raise ConfigError(f"lexicon_file {str(path)!r}: {exc.message}") from exc
    return lexicon or Lexicon()
