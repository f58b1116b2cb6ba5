"""Writing audio files: collision-free names, atomic writes, nothing outside the output folder."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

# Names this server writes; anything else is never served.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def new_filename(ext: str = "wav") -> str:
    """A fresh name like `bark_20261123-101500_3f9c2a1be04d.wav`."""
    return f"bark_{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:12]}.{ext}"


def save_wav(audio: np.ndarray, sample_rate: int, out_dir: Path) -> Path:
    """Write 16-bit PCM WAV under a new name; the file appears only once complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / new_filename("wav")
    tmp = path.with_name(path.name + ".part")
    sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return path


def resolve_output(out_dir: Path, filename: str) -> Path | None:
    """The file `filename` inside `out_dir`, or None if the name is unsafe or the file is missing."""
    if not SAFE_NAME.match(filename) or filename.endswith(".part"):
        return None
    base = out_dir.resolve()
    path = (base / filename).resolve()
    if path.parent != base or not path.is_file():
        return None
    return path
