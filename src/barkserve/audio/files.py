"""Writing audio files: collision-free names, atomic writes, nothing outside the output folder."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from barkserve.audio.encode import FORMATS, AudioFormat, encode
from barkserve.errors import StorageFull, StorageUnavailable

# Names this server writes; anything else is never served.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# The names `new_filename` makes: the only files the output folder's retention ever removes.
OUTPUT_NAME = re.compile(r"bark_\d{8}-\d{6}_[0-9a-f]{12}\.[a-z0-9]{1,8}")


def new_filename(ext: str = "wav") -> str:
    """A fresh name like `bark_20261123-101500_3f9c2a1be04d.wav`."""
    return f"bark_{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:12]}.{ext}"


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write(file)` to a temporary file beside `path`, fsync, then rename.

    The file appears only complete. Each writer has its own temporary name, so writers of one path
    never share a half-written file; a failed write leaves nothing behind and raises `StorageFull`
    or `StorageUnavailable` with the folder's name.
    """
    with storage_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def storage_errors(folder: Path) -> Iterator[None]:
    """Turn a disk-full or unwritable-folder OSError into a barkserve error that names the folder."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(
                f"the server's disk is full ({folder.name}/); nothing was saved. Free space or lower the "
                f"retention settings, then retry"
            ) from exc
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise StorageUnavailable(
                f"the server cannot write its folder {folder.name}/ ({exc.strerror}); nothing was saved. "
                f"The operator must make it writable"
            ) from exc
        raise


def write_file(path: Path, audio: np.ndarray, sample_rate: int, fmt: AudioFormat) -> None:
    """Encode and write to `path` atomically."""
    data = encode(audio, sample_rate, fmt)
    atomic_write(path, lambda f: f.write(data))


def save_audio(audio: np.ndarray, sample_rate: int, out_dir: Path, fmt: AudioFormat = FORMATS["wav"]) -> Path:
    """Encode and write under a new collision-free name in `out_dir`."""
    path = out_dir / new_filename(fmt.extension)
    write_file(path, audio, sample_rate, fmt)
    return path


def mimetype_of(path: Path) -> str:
    by_extension = {f.extension: f.mimetype for f in FORMATS.values()}
    return by_extension.get(path.suffix.lstrip("."), "application/octet-stream")


def resolve_output(out_dir: Path, filename: str) -> Path | None:
    """The file `filename` inside `out_dir`, or None if the name is unsafe or the file is missing."""
    if not SAFE_NAME.fullmatch(filename) or filename.endswith(".part"):
        return None
    base = out_dir.resolve()
    path = (base / filename).resolve()
    if path.parent != base or not path.is_file():
        return None
    return path


class OutputFolder:
    """The folder `/synthesize` writes to, kept within a size cap and a retention time."""

    def __init__(self, root: Path, max_bytes: int, retention_hours: float) -> None:
        self.root, self.max_bytes, self.retention_sec = root, max_bytes, retention_hours * 3600

    def files(self) -> list[os.DirEntry[str]]:
        """The audio files this server wrote there (never anything else)."""
        if not self.root.is_dir():
            return []
        return [e for e in os.scandir(self.root) if e.is_file() and OUTPUT_NAME.fullmatch(e.name)]

    def used_bytes(self) -> int:
        return sum(e.stat().st_size for e in self.files())

    def prune(self, now: float | None = None) -> int:
        """Remove files older than the retention time, in one pass; returns the bytes of those kept."""
        cutoff = (time.time() if now is None else now) - self.retention_sec
        kept = 0
        for entry in self.files():
            info = entry.stat()
            if info.st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)
            else:
                kept += info.st_size
        return kept

    def check_room(self) -> None:
        """Refuse new output (before any generation) while the folder is at its cap."""
        used = self.prune()
        if used >= self.max_bytes:
            raise StorageFull(
                f"the output folder holds {used / 1_048_576:.0f} MB, its cap (max_output_mb) is "
                f"{self.max_bytes / 1_048_576:.0f} MB; files are removed {self.retention_sec / 3600:g} hours after "
                f"they are written (output_retention_hours). Download and retry later, or ask the operator to "
                f"raise the cap"
            )
