"""`barkserve book` end to end on the tiny checkpoint: an EPUB in, a chaptered .m4b and SRT captions out."""

import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import srt

from barkserve.books.package import CHAPTER_GAP_SEC
from barkserve.jobs.store import JobStore
from bookfiles import CHAPTERS, add_encryption, cover_jpeg, make_epub

RATE = 24_000
WAIT_SEC = 600  # guards against a hang; not a speed assertion


def barkserve(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "barkserve.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WAIT_SEC)


def test_an_epub_becomes_a_chaptered_m4b_with_captions(tiny_model_dir: Path, tmp_path: Path) -> None:
    epub = make_epub(tmp_path / "book.epub")
    common = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    common += ["--max-duration", "0.3", "--seed", "5"]

    plan = barkserve("book", str(epub), "--plan", *common)
    assert plan.returncode == 0, plan.stderr
    rows = [line for line in plan.stdout.splitlines() if re.match(r"\s+\d+\s+\d+\s+\d+\s+\d+:\d\d:\d\d", line)]
    assert [row.split("  ")[-1].strip() for row in rows] == [name for name, _ in CHAPTERS]
    assert not (tmp_path / "jobs" / "barkserve.db").exists()  # a dry run queues nothing

    out = tmp_path / "book.m4b"
    run = barkserve("book", str(epub), "-o", str(out), "--captions", "srt", *common)
    assert run.returncode == 0, run.stderr
    job_id = re.search(r"job ([0-9a-f]{32})", run.stdout).group(1)  # type: ignore[union-attr]
    store = JobStore(f"sqlite:///{tmp_path / 'jobs' / 'barkserve.db'}")
    chapters = store.chapter_progress(job_id)
    assert chapters is not None and [c["chunks_done"] for c in chapters] == [c["chunks_total"] for c in chapters]

    # Each chapter's audio is its chunk files joined; chapter marks start where each one does.
    folder, first, lengths = tmp_path / "jobs" / job_id, 0, []
    for chapter in chapters:
        count = chapter["chunks_total"]
        lengths.append(sum(len(np.load(folder / f"chunk_{i:05d}.npz")["audio"]) for i in range(first, first + count)))
        first += count
    gap = round(CHAPTER_GAP_SEC * RATE)
    starts = np.cumsum([0, *(n + gap for n in lengths[:-1])]) / RATE
    total = (sum(lengths) + gap * (len(lengths) - 1)) / RATE
    with av.open(str(out)) as container:
        marks = container.chapters()
        assert [m["metadata"]["title"] for m in marks] == [name for name, _ in CHAPTERS]
        assert [float(m["start"] * m["time_base"]) for m in marks] == pytest.approx(starts, abs=1e-3)
        assert container.metadata["title"] == "Storm Over the Harbour"
        assert container.metadata["artist"] == "Ann Writer"
        cover = next(s for s in container.streams.video if s.disposition & av.stream.Disposition.attached_pic)
        assert bytes(next(container.demux(cover))) == cover_jpeg()
        decoded = sum(f.samples for f in container.decode(audio=0))
    assert decoded == pytest.approx(total * RATE, abs=2 * 1024)  # AAC frames of 1,024 samples

    cues = list(srt.parse((tmp_path / "book.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues) == " ".join(f"{n}. {t}" for n, t in CHAPTERS).replace(" [laughs]", "")
    begins = [c.start.total_seconds() for c in cues]
    assert begins == sorted(begins) and begins[0] == 0
    assert cues[-1].end.total_seconds() == pytest.approx(total, abs=1e-3)

    again = barkserve("book", str(epub), "-o", str(out), *common)  # the same command finds the finished job
    assert again.returncode == 0 and f"resuming job {job_id}" in again.stderr


def test_a_drm_epub_fails_before_anything_is_made(tiny_model_dir: Path, tmp_path: Path) -> None:
    epub = add_encryption(make_epub(tmp_path / "book.epub"))
    out = tmp_path / "book.m4b"
    run = barkserve("book", str(epub), "-o", str(out), "--model", str(tiny_model_dir), "--jobs-dir", str(tmp_path))
    assert run.returncode == 1 and "DRM" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists() and not (tmp_path / "barkserve.db").exists()
