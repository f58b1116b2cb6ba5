"""Recordings and transcripts in the forms people have, paired up, with every mismatch listed by line.

Three forms:
    LJSpeech folder   `metadata.csv` (`id|text` or `id|text|normalized text`) and `wavs/<id>.wav`
    JSONL or CSV      one item per line / row: `audio` (path, relative to the file), `text`, optional `speaker`
    plain folder      audio files (wav, flac, mp3, ogg) with a same-named `.txt` transcript beside each
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from barkserve.errors import DatasetError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
# Problems shown in one error message; the rest are counted.
MAX_LISTED = 20


@dataclass(frozen=True)
class Entry:
    """One recording and its transcript, and where it was listed (for messages)."""

    where: str  # "metadata.csv line 4", "clips/a.wav"
    audio: Path
    text: str
    speaker: str = ""


def problems_error(title: str, problems: list[str], hint: str) -> DatasetError:
    """One error listing up to MAX_LISTED problems, one per line, and how to fix them."""
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return DatasetError(f"{title}:\n  " + "\n  ".join(shown) + more + f"\n{hint}")


def read_entries(data: str | Path) -> list[Entry]:
    """The (audio, text) pairs of a data folder or list file.

    Raises:
        DatasetError: Unknown form, or transcripts without audio / audio without transcript (all listed).
    """
    path = Path(data)
    if path.is_dir() and (path / "metadata.csv").is_file():
        entries, problems = _ljspeech(path)
    elif path.is_dir():
        entries, problems = _folder(path)
    elif path.is_file() and path.suffix.lower() in (".jsonl", ".csv"):
        entries, problems = _jsonl(path) if path.suffix.lower() == ".jsonl" else _csv(path)
    else:
        raise DatasetError(
            f"{path}: give an LJSpeech folder (metadata.csv + wavs/), a .jsonl or .csv of audio,text, "
            "or a folder of audio files with same-named .txt transcripts"
        )
    if problems:
        raise problems_error(
            f"{path}: {len(problems)} item(s) cannot be paired",
            problems,
            "Every transcript needs its recording and every recording its transcript; fix or remove these.",
        )
    if not entries:
        raise DatasetError(f"{path} holds no recordings with transcripts")
    return entries


def _ljspeech(root: Path) -> tuple[list[Entry], list[str]]:
    entries, problems, listed = [], [], set()
    lines = _read_text(root / "metadata.csv").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"metadata.csv line {number}"
        fields = line.split("|")
        # LJSpeech's second column is the text as read; the third spells numbers out. Bark reads the
        # raw text (and keeps cues such as [laughs]), so the second is used when both are present.
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            problems.append(f"{where}: expected 'id|text'; got {line[:60]!r}")
            continue
        name = fields[0].strip()
        audio = root / "wavs" / f"{name}.wav"
        listed.add(audio.name)
        if not audio.is_file():
            problems.append(f"{where}: transcript {name!r} has no audio wavs/{name}.wav")
            continue
        entries.append(Entry(where, audio, fields[1].strip()))
    wavs = root / "wavs"
    unlisted = sorted(p.name for p in wavs.glob("*.wav")) if wavs.is_dir() else []
    problems += [f"wavs/{name}: audio without a transcript in metadata.csv" for name in unlisted if name not in listed]
    return entries, problems


def _folder(root: Path) -> tuple[list[Entry], list[str]]:
    entries, problems = [], []
    audio_files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    stems = {p.with_suffix("") for p in audio_files}
    for audio in audio_files:
        rel = audio.relative_to(root).as_posix()
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            problems.append(f"{rel}: audio without a transcript {transcript.name}")
            continue
        text = " ".join(_read_text(transcript).split())
        if not text:
            problems.append(f"{transcript.relative_to(root).as_posix()}: the transcript is empty")
            continue
        entries.append(Entry(rel, audio, text, speaker=audio.parent.relative_to(root).as_posix()))
    for transcript in sorted(root.rglob("*.txt")):
        if transcript.with_suffix("") not in stems:
            problems.append(f"{transcript.relative_to(root).as_posix()}: transcript without audio")
    return entries, problems


def _row(where: str, base: Path, row: object) -> tuple[Entry | None, str | None]:
    if not isinstance(row, dict):
        return None, f"{where}: expected an object with 'audio' and 'text'"
    audio, text = row.get("audio"), row.get("text")
    if not isinstance(audio, str) or not audio.strip():
        return None, f"{where}: transcript without audio (no 'audio' path)"
    if not isinstance(text, str) or not text.strip():
        return None, f"{where}: audio {audio!r} without a transcript (no 'text')"
    path = base / audio
    if not path.is_file():
        return None, f"{where}: transcript has no audio file {audio}"
    speaker = row.get("speaker")
    return Entry(where, path, " ".join(text.split()), str(speaker) if speaker else ""), None


def _collect(rows: list[tuple[str, object]], base: Path) -> tuple[list[Entry], list[str]]:
    entries, problems = [], []
    for where, row in rows:
        entry, problem = _row(where, base, row)
        if entry is not None:
            entries.append(entry)
        if problem is not None:
            problems.append(problem)
    return entries, problems


def _jsonl(path: Path) -> tuple[list[Entry], list[str]]:
    rows: list[tuple[str, object]] = []
    bad = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path.name} line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            bad.append(f"{path.name} line {number}: not JSON ({exc.msg})")
    entries, problems = _collect(rows, path.parent)
    return entries, bad + problems


def _csv(path: Path) -> tuple[list[Entry], list[str]]:
    reader = csv.DictReader(_read_text(path).splitlines())
    if not reader.fieldnames or not {"audio", "text"} <= set(reader.fieldnames):
        raise DatasetError(f"{path}: the first row must name the columns, including 'audio' and 'text'")
    # Line numbers count the header as line 1.
    rows: list[tuple[str, object]] = [(f"{path.name} line {n}", row) for n, row in enumerate(reader, start=2)]
    return _collect(rows, path.parent)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; transcripts must be UTF-8 text") from exc
