"""A job's folder: chunk checkpoints, the final audio, and other formats converted once, on demand."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from barkserve.audio.encode import FORMATS, AudioFormat, encode
from barkserve.audio.files import atomic_write
from barkserve.captions import Cue, from_json, to_json
from barkserve.engine import GeneratedAudio
from barkserve.voices import VoicePrompt

# One lock per file path, shared by every JobFiles in the process; a lock lives while someone holds it.
_LOCKS: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
_LOCKS_GUARD = threading.Lock()


class JobFiles:
    """The files of job `job_id` under `root`; every write is atomic under a name no other writer uses."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.folder = root / job_id

    def chunk(self, index: int) -> Path:
        """Where chunk `index`'s checkpoint (audio, and the history it leaves) is kept."""
        return self.folder / f"chunk_{index:05d}.npz"

    def write_chunk(self, index: int, audio: np.ndarray, generated: GeneratedAudio) -> Path:
        """Checkpoint chunk `index`: its audio as delivered and, when known, the tokens that made it
        (the history a carried voice resumes from). The file appears only complete."""
        arrays = {"audio": audio}
        if generated.semantic is not None and generated.fine is not None:
            arrays |= {"semantic": generated.semantic, "fine": generated.fine}
        path = self.chunk(index)
        try:
            atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
        except OSError as exc:  # disk full, permissions: the job fails with the reason
            raise OSError(f"could not write chunk {index} to {path}: {exc.strerror or exc}") from exc
        return path

    def audio(self, index: int) -> np.ndarray:
        """Chunk `index`'s audio as delivered (speech, then its pause)."""
        with np.load(self.chunk(index)) as data:
            return np.asarray(data["audio"], dtype=np.float32)

    def history(self, index: int, voice: VoicePrompt, sample_rate: int) -> VoicePrompt:
        """The voice that follows chunk `index` when history is carried: its saved tokens, or `voice`
        when it saved none (no speech, or a checkpoint from before tokens were kept)."""
        with np.load(self.chunk(index)) as data:
            if "semantic" not in data.files:
                return voice
            saved = GeneratedAudio(np.empty(0, np.float32), sample_rate, data["semantic"], data["fine"])
        return saved.as_history(voice)

    def quality(self, index: int) -> Path:
        """Where chunk `index`'s quality-control record is kept (when the job asked for `qc`)."""
        return self.folder / f"chunk_{index:05d}.qc.json"

    def write_quality(self, index: int, record: dict[str, object]) -> None:
        data = json.dumps(record).encode()
        atomic_write(self.quality(index), lambda f: f.write(data))

    def read_quality(self, index: int) -> dict[str, object] | None:
        path = self.quality(index)
        return json.loads(path.read_text()) if path.is_file() else None

    def final(self, fmt: AudioFormat | str) -> Path:
        """Where the joined audio is kept in `fmt`."""
        return self.folder / f"final.{_name(fmt)}"

    def write_final(self, audio: np.ndarray, sample_rate: int, fmt: AudioFormat | str) -> Path:
        """Encode the joined audio as `fmt` and put it in place."""
        path = self.final(fmt)
        data = encode(audio, sample_rate, FORMATS[_name(fmt)])
        atomic_write(path, lambda f: f.write(data))
        return path

    def book(self, output: str) -> Path:
        """Where a book job's packaged audio is kept: `book.m4b`, `book.epub` (read-along), or `chapters.zip`."""
        names = {"m4b": "book.m4b", "epub3": "book.epub"}
        return self.folder / names.get(output, "chapters.zip")

    def captions(self, chapter: int | None = None) -> Path:
        """Where the job's captions are kept (JSON; served as SRT, WebVTT or JSON): the whole job's, or
        a book's chapter `chapter` (numbered from 1), timed from that chapter's start."""
        return self.folder / ("captions.json" if chapter is None else f"captions.chapter{chapter:04d}.json")

    def write_captions(self, cues: Sequence[Cue], warnings: Sequence[str] = (), chapter: int | None = None) -> Path:
        data = to_json(cues, warnings).encode("utf-8")
        path = self.captions(chapter)
        atomic_write(path, lambda f: f.write(data))
        return path

    def read_captions(self, chapter: int | None = None) -> list[Cue] | None:
        """The captions, or None for a job finished before these captions were made."""
        path = self.captions(chapter)
        return from_json(path.read_text(encoding="utf-8")) if path.is_file() else None

    def ensure(self, fmt: AudioFormat | str) -> Path:
        """The final audio in `fmt`, converted from final.flac if no one has made it yet.

        In this process one caller converts and the others wait for its file; another process
        converting at the same time only ever replaces the file with a complete one.
        """
        path = self.final(fmt)
        if path.is_file():
            return path
        with _path_lock(path):
            if not path.is_file():
                audio, rate = sf.read(self.final("flac"), dtype="float32")
                self.write_final(audio, rate, fmt)
        return path


def _path_lock(path: Path) -> threading.Lock:
    """The process-wide lock of `path`."""
    key = str(path.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = threading.Lock()
            _LOCKS[key] = lock
        return lock


def _name(fmt: AudioFormat | str) -> str:
    return fmt if isinstance(fmt, str) else fmt.name
