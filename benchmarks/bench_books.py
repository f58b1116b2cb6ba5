"""Benchmark: planning the largest real-book corpus file, as `barkserve book FILE --plan` does.

One plan is what a user waits for before a book job starts: the book read (`read_book`), the job checked
(`prepare_book_job`: voices, chapters, text) and its plan made (`jobs/preview.plan_view`: every chapter
split into Bark's chunks). Targets (issue 23): under 10 s and under 500 MB.

Time: `--repeats` plans (median, min-max), without tracemalloc. Memory, three ways: the process's peak
resident size (ru_maxrss: torch, transformers, the tokenizer and the voices included); what the book
itself adds (Linux: the resident size once a one-line book has loaded all that, then the peak during the
book's first plan, the peak reset between through /proc/self/clear_refs); and the peak of Python's own
allocations during one more plan (tracemalloc, which misses PDFium's).

The book: `--book FILE`, else the largest file of tests/books/corpus/expected.json that is installed.
The model: `--model PATH`, else a tiny random checkpoint (planning uses the tokenizer and the voice
presets, not the weights; the tiny checkpoint has bark-small's BERT tokenizer).

Run: `python benchmarks/bench_books.py [--quick] [--book FILE] [--out FILE]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXPECTED = HERE.parent / "tests" / "books" / "corpus" / "expected.json"
TARGET_SEC = 10.0
TARGET_MB = 500.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_books.py", description=__doc__.splitlines()[0])
    p.add_argument("--book", type=Path, help="the book to plan (default: the largest installed corpus file)")
    p.add_argument("--model", help="Bark checkpoint folder (default: a tiny random one)")
    p.add_argument("--repeats", type=int, help="timed plans (default 5; quick 1)")
    p.add_argument("--quick", action="store_true", help="one repeat (a smoke run)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    return p.parse_args(argv)


def largest_corpus_book() -> Path:
    files = [Path(p) for p in json.loads(EXPECTED.read_text(encoding="utf-8")) if not p.startswith("built/")]
    present = [f for f in files if f.is_file()]
    if not present:
        raise SystemExit("no corpus book is installed (run .ci/system-deps.sh) and no --book was given")
    return max(present, key=lambda f: f.stat().st_size)


def plan_once(synth: Any, data: bytes, name: str) -> dict[str, Any]:
    """One plan, as `barkserve book FILE --plan --json` makes it."""
    from barkserve.books import read_book
    from barkserve.jobs.preview import plan_view
    from barkserve.jobs.submit import prepare_book_job

    book = read_book(data, name, max_bytes=synth.config.max_book_bytes)
    request = prepare_book_job(synth, book)
    return plan_view(synth, request, book, None)


def status_mb(field: str) -> float | None:
    """A size from /proc/self/status (VmRSS: now, VmHWM: the peak) in MB; None off Linux."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in lines if line.startswith(f"{field}:")), None)
    return None if kib is None else kib / 1024


def reset_peak() -> bool:
    """Start VmHWM again from the current resident size (Linux 4.0 and later)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def versions() -> dict[str, str]:
    names = ("barkserve", "pypdf", "pypdfium2", "lxml", "beautifulsoup4", "transformers")
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from barkserve.config import ServerConfig
    from barkserve.synthesizer import Synthesizer
    from barkserve.testing.provenance import git_commit

    book = args.book or largest_corpus_book()
    repeats = args.repeats or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from barkserve.testing.tiny import make_tiny_checkpoint

            model = str(make_tiny_checkpoint(Path(tmp) / "tiny"))
        folders = {"output_dir": Path(tmp) / "out", "voices_dir": Path(tmp) / "voices", "jobs_dir": Path(tmp) / "jobs"}
        config = ServerConfig(model=model, offline=True, device="cpu", asr_model="", speaker_model="", **folders)
        synth = Synthesizer(config)
        data = book.read_bytes()
        plan_once(synth, b"A one-line book.", "warm.txt")  # imports, the tokenizer and the voices, loaded once
        before = status_mb("VmRSS")
        book_peak = status_mb("VmHWM") if reset_peak() else None
        view = plan_once(synth, data, book.name)
        book_peak = status_mb("VmHWM") if book_peak is not None else None
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            plan_once(synth, data, book.name)
            seconds.append(time.perf_counter() - start)
        tracemalloc.start()
        plan_once(synth, data, book.name)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        synth.close()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result_book_mb = None if book_peak is None or before is None else book_peak - before
    result = {
        "book": book.name,
        "bytes": len(data),
        "chapters": len(view["chapters"]),
        "chunks": view["chunks"],
        "words": sum(c["words"] for c in view["chapters"]),
        "repeats": repeats,
        "seconds": spread(seconds),
        "python_peak_mb": peak / 2**20,
        "max_rss_mb": max_rss_mb,
        "rss_before_book_mb": before,
        "book_rss_mb": result_book_mb,
        "targets": {"seconds": TARGET_SEC, "memory_mb": TARGET_MB},
        # The memory target read two ways: the whole process, and what the book adds to it.
        "within_targets": {
            "seconds": statistics.median(seconds) < TARGET_SEC,
            "process_rss": max_rss_mb < TARGET_MB,
            "book_rss": result_book_mb is not None and result_book_mb < TARGET_MB,
        },
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "commit": git_commit(),
        "versions": versions(),
    }
    s = result["seconds"]
    head = f"{'book':<34} {'chapters':>8} {'chunks':>7} {'plan s (median, min-max)':>26} {'py MB':>7} {'rss MB':>7}"
    print(head + f" {'book MB':>8}")
    timing = f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"
    print(
        f"{book.name:<34} {result['chapters']:>8} {result['chunks']:>7} {timing:>26} "
        f"{result['python_peak_mb']:>7.1f} {max_rss_mb:>7.0f} {result['book_rss_mb'] or float('nan'):>8.0f}"
    )
    line = json.dumps(result)
    if args.out is not None:
        args.out.write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
