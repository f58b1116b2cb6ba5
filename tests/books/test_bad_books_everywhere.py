"""Bad books on every path: POST /jobs, POST /books/plan and `barkserve book` refuse a book that cannot be
read with a clear error naming the file, before anything is queued; a book with one unreadable document is
read all the same, and its plan and its job say what was skipped and why."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from barkserve.books.html import MAX_DEPTH
from barkserve.cli import main
from bookfiles import CHAPTERS, make_blank_pdf, make_epub
from support import FakeEngine

FAST = {"max_duration_sec": "0.2"}


def with_member(src: Path, dst: Path, name: str, data: bytes | None) -> Path:
    """A copy of an EPUB with member `name` replaced by `data`, or left out when None."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename != name:
                new.writestr(info, old.read(info.filename))
            elif data is not None:
                new.writestr(info, data)
    return dst


def truncated(tmp_path: Path) -> Path:
    path = make_epub(tmp_path / "whole.epub")
    (tmp_path / "cut short.epub").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return tmp_path / "cut short.epub"


def no_opf(tmp_path: Path) -> Path:
    return with_member(make_epub(tmp_path / "b.epub"), tmp_path / "no opf.epub", "EPUB/content.opf", None)


def broken_opf(tmp_path: Path) -> Path:
    opf = b'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf"><metadata><dc:title>'
    return with_member(make_epub(tmp_path / "b.epub"), tmp_path / "broken opf.epub", "EPUB/content.opf", opf)


def scanned(tmp_path: Path) -> Path:
    return make_blank_pdf(tmp_path / "scanned book.pdf")


# (case, the book, what the message says besides the file's name)
UNREADABLE = [
    ("truncated zip", truncated, "the zip archive is damaged"),
    ("missing opf", no_opf, "its package document EPUB/content.opf is missing"),
    ("malformed opf", broken_opf, "package document EPUB/content.opf is not well-formed XML"),
    ("no text layer", scanned, "no text layer"),
]


def post(client: Any, route: str, path: Path, **fields: Any) -> Any:
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **FAST, **fields}
    return client.post(route, data=data, content_type="multipart/form-data")


def job_folders(app: Any) -> list[Path]:
    jobs_dir = app.extensions["barkserve"].config.jobs_dir
    return [p for p in jobs_dir.iterdir() if p.is_dir()] if jobs_dir.exists() else []


@pytest.mark.parametrize("route", ["/jobs", "/books/plan"])
@pytest.mark.parametrize(("case", "make", "needle"), UNREADABLE, ids=[c[0] for c in UNREADABLE])
def test_an_unreadable_book_is_a_400_naming_it_and_nothing_is_queued(
    make_app: Any, tmp_path: Path, route: str, case: str, make: Callable[[Path], Path], needle: str
) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    path = make(tmp_path)
    answer = post(client, route, path)
    assert answer.status_code == 400, answer.data
    error = answer.get_json()["error"]
    assert error["code"] == "invalid_book" and path.name in error["message"] and needle in error["message"], error
    assert client.get("/jobs").get_json()["total"] == 0 and job_folders(app) == []


@pytest.mark.parametrize("plan", [True, False], ids=["plan", "job"])
@pytest.mark.parametrize(("case", "make", "needle"), UNREADABLE, ids=[c[0] for c in UNREADABLE])
def test_the_command_refuses_an_unreadable_book_before_any_job(
    tiny_model_dir: Path, tmp_path: Path, plan: bool, case: str, make: Callable[[Path], Path], needle: str
) -> None:
    path = make(tmp_path)
    jobs_dir = tmp_path / "jobs"
    what = ["--plan"] if plan else ["-o", str(tmp_path / "out.m4b")]
    flags = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(jobs_dir), "--max-duration", "0.2"]
    result = CliRunner().invoke(main, ["book", str(path), *what, *flags])
    assert result.exit_code == 1, result.output
    assert path.name in result.output and needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.m4b").exists()
    assert not jobs_dir.exists() or not [p for p in jobs_dir.iterdir() if p.is_dir()]


def partly_unreadable(tmp_path: Path) -> Path:
    """The test book with its second chapter's document nested too deep to read (BeautifulSoup's edits are
    quadratic in the depth, so such a document is refused)."""
    deep = b"<html><body><h1>The Storm</h1>" + b"<div>" * (MAX_DEPTH + 10) + b"Rain." + b"</div>" * (MAX_DEPTH + 10)
    src = make_epub(tmp_path / "b.epub")
    return with_member(src, tmp_path / "partly.epub", "EPUB/chap_2.xhtml", deep + b"</body></html>")


def skipped_note(warnings: list[str]) -> str:
    notes = [w for w in warnings if "EPUB/chap_2.xhtml" in w]
    assert len(notes) == 1, warnings
    assert "could not be read" in notes[0] and f"more than {MAX_DEPTH} deep" in notes[0]
    return notes[0]


def test_a_book_with_an_unreadable_document_is_read_and_says_what_it_skipped(
    make_app: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    path = partly_unreadable(tmp_path)
    read = [CHAPTERS[0][0], CHAPTERS[2][0]]  # the second chapter's document is the unreadable one
    app = make_app(FakeEngine)
    client = app.test_client()
    plan = post(client, "/books/plan", path)
    assert plan.status_code == 200, plan.data
    view = plan.get_json()
    assert [c["title"] for c in view["chapters"]] == read
    note = skipped_note(view["warnings"])
    job = post(client, "/jobs", path)
    assert job.status_code == 202, job.data
    assert skipped_note(client.get(f"/jobs/{job.get_json()['id']}").get_json()["warnings"]) == note
    assert [c["title"] for c in job.get_json()["chapters"]] == read
    flags = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    result = CliRunner().invoke(main, ["book", str(path), "--plan", "--json", "--max-duration", "0.2", *flags])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == view
