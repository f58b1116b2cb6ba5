"""Test sets of `barkserve eval`: JSONL or CSV lines of text, language and voice (id and seed optional).

The shipped default (`data/default.jsonl`) has short and long sentences with Bark's cues in all 13
of its languages. A line that cannot be used is an `InvalidRequest` naming the file and line number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from barkserve.errors import InvalidRequest
from barkserve.options import MAX_SEED
from barkserve.voices import LANGUAGES

REQUIRED = ("text", "language", "voice")
OPTIONAL = ("id", "seed")
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class TestLine:
    """One sample to synthesize; `seed` None means the run's seed + `index`."""

    __test__ = False  # not a pytest class, whatever its name

    index: int  # 0-based position among the lines kept
    line: int  # 1-based line number in the file, for messages
    id: str
    text: str
    language: str
    voice: str
    seed: int | None = None


@dataclass(frozen=True)
class TestSet:
    """The lines of one test set and where they came from."""

    __test__ = False

    source: str  # a path, or "default" for the shipped set
    lines: tuple[TestLine, ...]

    @property
    def languages(self) -> list[str]:
        return sorted({line.language for line in self.lines})


def default_text() -> str:
    """The shipped default test set, as JSONL text."""
    return resources.files("barkserve.evaluation").joinpath("data/default.jsonl").read_text(encoding="utf-8")


def load_testset(path: str | Path | None = None) -> TestSet:
    """Read a test set: a `.jsonl` / `.json` or `.csv` file, or the shipped default when `path` is None.

    Raises:
        InvalidRequest: The file is missing or unreadable, or a line is malformed (the message names
            the file and the line).
    """
    if path is None:
        return TestSet(DEFAULT_NAME, parse_jsonl(default_text(), DEFAULT_NAME))
    file = Path(path)
    if not file.is_file():
        raise InvalidRequest(f"test set {file} does not exist (or is not a file); give a .jsonl or .csv file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"test set {file} cannot be read as UTF-8 text ({exc})") from exc
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return TestSet(str(file), parse_csv(text, str(file)))
    if suffix in (".jsonl", ".json", ".ndjson"):
        return TestSet(str(file), parse_jsonl(text, str(file)))
    raise InvalidRequest(f"test set {file}: use a .jsonl or .csv file; got {suffix or 'no extension'!r}")


def parse_jsonl(text: str, label: str) -> tuple[TestLine, ...]:
    """One JSON object per line; blank lines are skipped."""
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{label}, line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
        rows.append((number, row))
    return _lines(rows, label)


def parse_csv(text: str, label: str) -> tuple[TestLine, ...]:
    """A header row naming the columns (text, language, voice; id, seed optional), then one row per sample."""
    reader = csv.DictReader(io.StringIO(text), strict=True)
    rows: list[tuple[int, Any]] = []
    try:
        header = reader.fieldnames or []
        for row in reader:
            if None in row:  # more cells than the header names
                raise InvalidRequest(f"{label}, line {reader.line_num}: more cells than the header has columns")
            if not any((v or "").strip() for v in row.values()):
                continue
            rows.append((reader.line_num, {k: v for k, v in row.items() if v is not None and v != ""}))
    except csv.Error as exc:
        raise InvalidRequest(f"{label}, line {reader.line_num}: not valid CSV ({exc})") from exc
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise InvalidRequest(f"{label}, line 1: the header must name the columns {list(REQUIRED)}; missing {missing}")
    return _lines(rows, label)


def _lines(rows: list[tuple[int, Any]], label: str) -> tuple[TestLine, ...]:
    lines: list[TestLine] = []
    seen: dict[str, int] = {}
    for number, row in rows:
        line = _line(row, len(lines), number, label)
        if line.id in seen:
            raise InvalidRequest(f"{label}, line {number}: id {line.id!r} is already used on line {seen[line.id]}")
        seen[line.id] = number
        lines.append(line)
    if not lines:
        raise InvalidRequest(f"{label}: the test set has no lines")
    return tuple(lines)


def _line(row: object, index: int, number: int, label: str) -> TestLine:
    where = f"{label}, line {number}"
    if not isinstance(row, Mapping):
        raise InvalidRequest(f'{where}: expected an object like {{"text": ..., "language": "en", "voice": ...}}')
    unknown = sorted(set(row) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise InvalidRequest(f"{where}: unknown field(s) {unknown}; fields are {[*REQUIRED, *OPTIONAL]}")
    for name in REQUIRED:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{where}: {name!r} must be a non-empty string; got {value!r}")
    language = row["language"].strip().lower()
    if language not in LANGUAGES:
        raise InvalidRequest(f"{where}: language must be one of Bark's {list(LANGUAGES)}; got {row['language']!r}")
    return TestLine(
        index=index,
        line=number,
        id=_id(row.get("id"), number, where),
        text=row["text"].strip(),
        language=language,
        voice=row["voice"].strip(),
        seed=_seed(row.get("seed"), where),
    )


def _id(value: object, number: int, where: str) -> str:
    if value is None:
        return f"line-{number}"
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise InvalidRequest(f"{where}: id must be a non-empty string or integer; got {value!r}")
    return str(value).strip()


def _seed(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())  # CSV cells are text
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidRequest(f"{where}: seed must be an integer from 0 to 2**63-1; got {value!r}")
    return value
