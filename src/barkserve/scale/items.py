"""`barkserve batch`'s input (one JSON object per line) and its manifest (one JSON record per outcome).

An input line is `{"text": ..., "id"?: ..., "voice"?: ..., "model"?: ..., "format"?: "wav", <any
synthesis option: seed, text_temp, ...>}`. Every line is checked before anything is generated; all
bad lines are reported together, by line number. What needs the model (the voice exists, the model
is allowed) is checked per item when it runs: such an item fails with its reason, the others finish.

The manifest (`manifest.jsonl` in the output folder) is appended to after each item's file is
written, so a run killed at any point leaves a manifest that names only complete files. The last
record of an id wins; a torn last line (killed mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from barkserve.audio.encode import get_format
from barkserve.errors import BarkServeError, BatchInputError
from barkserve.options import MAX_SEED, SynthesisOptions

MANIFEST = "manifest.jsonl"
ITEM_KEYS = ("id", "text", "voice", "model", "format")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# At most this many bad lines are listed in the error; the count says how many there were.
LISTED_ERRORS = 20


@dataclass(frozen=True)
class BatchItem:
    """One validated input line."""

    line: int  # 1-based line number in the input file
    id: str  # the output file's stem; `line-<n>` unless the line gives one
    text: str
    voice: str | int | None
    model: str | None
    format: str
    options: dict[str, Any] = field(default_factory=dict)  # SynthesisOptions fields, seed always set

    @property
    def filename(self) -> str:
        return f"{self.id}.{get_format(self.format).extension}"

    @property
    def fingerprint(self) -> str:
        """What the item asks for; a changed line is generated again on the next run."""
        fields_ = {"text": self.text, "voice": self.voice, "model": self.model, "format": self.format}
        data = json.dumps({**fields_, "options": self.options}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_line(number: int, raw: str) -> BatchItem:
    """One line as an item; `BatchInputError` says what is wrong with it."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BatchInputError(f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise BatchInputError(f'must be a JSON object like {{"text": "Hello"}}; got {type(data).__name__}')
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BatchInputError("needs a non-empty string field 'text'")
    item_id = data.get("id", f"line-{number}")
    if not isinstance(item_id, str) or not ID_PATTERN.fullmatch(item_id):
        raise BatchInputError(f"id must be 1-100 letters, digits, '_', '.' or '-' (a file name); got {item_id!r}")
    voice, model, fmt = data.get("voice"), data.get("model"), data.get("format", "wav")
    if model is not None and not isinstance(model, str):
        raise BatchInputError(f"model must be a string; got {model!r}")
    options = {k: v for k, v in data.items() if k not in ITEM_KEYS}
    try:
        get_format(fmt)
        opts = SynthesisOptions.from_dict(options)
    except BarkServeError as exc:
        raise BatchInputError(exc.message) from exc
    item = BatchItem(number, item_id, text, voice, model, fmt, opts.to_dict())
    if opts.seed is None:
        # A fixed seed per item: a rerun, a retry or another machine makes the same audio.
        seed = int(item.fingerprint, 16) % (MAX_SEED + 1)
        item = BatchItem(number, item_id, text, voice, model, fmt, {**opts.to_dict(), "seed": seed})
    return item


def read_items(path: Path) -> list[BatchItem]:
    """Every item of a JSONL file (blank lines skipped); all bad lines reported at once, with numbers."""
    items: list[BatchItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read {path}: {exc}") from exc
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = parse_line(number, raw)
        except BatchInputError as exc:
            problems.append(f"line {number}: {exc.message}")
            continue
        if item.id in seen:
            problems.append(f"line {number}: id {item.id!r} is already used on line {seen[item.id]}")
            continue
        seen[item.id] = number
        items.append(item)
    if problems:
        more = f" (and {len(problems) - LISTED_ERRORS} more)" if len(problems) > LISTED_ERRORS else ""
        listed = "; ".join(problems[:LISTED_ERRORS])
        raise BatchInputError(f"{path.name} has {len(problems)} bad line(s), nothing was generated: {listed}{more}")
    if not items:
        raise BatchInputError(f'{path.name} has no items; each line is a JSON object like {{"text": "Hello"}}')
    return items


class Manifest:
    """The output folder's record of every item's outcome (JSON lines, appended, fsynced)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST

    def records(self) -> dict[str, dict[str, Any]]:
        """The latest record of each id (a torn or foreign line is skipped)."""
        latest: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return latest
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                latest[record["id"]] = record
        return latest

    def is_done(self, item: BatchItem, record: dict[str, Any] | None) -> bool:
        """True when the item's file was written for this very request and is still whole."""
        if record is None or record.get("status") != "ok" or record.get("fingerprint") != item.fingerprint:
            return False
        path = self.out_dir / item.filename
        return path.is_file() and path.stat().st_size == record.get("bytes")

    def pending(self, items: Iterable[BatchItem]) -> list[BatchItem]:
        """The items still to make."""
        records = self.records()
        return [item for item in items if not self.is_done(item, records.get(item.id))]

    def append(self, record: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torn = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        with self.path.open("ab") as f:
            # A run killed mid-line left a torn record: end it, so this one stays a line of its own.
            f.write((("\n" if torn else "") + json.dumps(record) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
