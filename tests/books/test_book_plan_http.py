"""POST /books/plan: a book upload's plan, the same JSON as `barkserve book --plan --json`, and no job."""

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from barkserve.cli import main
from bookfiles import CHAPTERS, make_epub
from support import FakeEngine

ARABIC = "built/pandoc-epub3/debian-handbook.ar.epub"


def plan(client: Any, path: Path, **fields: Any) -> Any:
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **fields}
    return client.post("/books/plan", data=data, content_type="multipart/form-data")


def test_the_plan_of_an_upload_is_the_cli_plan_and_queues_nothing(
    make_app: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    epub = make_epub(tmp_path / "b.epub")
    answer = plan(client, epub, voice_preset="4", chapters="2-3", max_duration_sec="0.2")
    assert answer.status_code == 200, answer.data
    view = answer.get_json()
    assert [c["title"] for c in view["chapters"]] == [name for name, _ in CHAPTERS[1:]]
    assert [c["number"] for c in view["chapters"]] == [2, 3]
    assert view["voice"] == "v2/en_speaker_4" and all(c["chunks"] >= 1 for c in view["chapters"])
    assert client.get("/jobs").get_json()["total"] == 0  # nothing queued
    folders = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    cli = ["book", str(epub), "--plan", "--json", "--voice", "4", "--chapters", "2-3", "--max-duration", "0.2"]
    result = CliRunner().invoke(main, [*cli, *folders])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == view


def test_a_right_to_left_book_in_a_language_bark_lacks_is_planned_with_a_warning(
    make_app: Any, built_book: Callable[[str], Path]
) -> None:
    client = make_app(FakeEngine).test_client()
    answer = plan(client, built_book(ARABIC))
    assert answer.status_code == 200, answer.data
    view = answer.get_json()
    assert view["language"] == "ar" and view["voice"] == "v2/en_speaker_6"  # the default voice
    assert any("ar" in w and "Bark" in w for w in view["warnings"]), view["warnings"]
    assert view["chapters"][1]["title"] == "مقدمة" and view["chapters"][1]["first_words"].startswith("مقدمة")


def test_bad_plan_requests_are_400_before_anything(make_app: Any, tmp_path: Path) -> None:
    client = make_app(FakeEngine).test_client()
    epub = make_epub(tmp_path / "b.epub")
    out_of_range = plan(client, epub, chapters="9")
    assert out_of_range.status_code == 400 and "1-3" in out_of_range.get_json()["error"]["message"]
    no_file = client.post("/books/plan", json={"text": "hi"})
    assert no_file.status_code == 400 and "'file'" in no_file.get_json()["error"]["message"]
    broken = tmp_path / "broken.epub"
    broken.write_bytes(epub.read_bytes()[:-300])
    damaged = plan(client, broken)
    assert damaged.status_code == 400 and "broken.epub" in damaged.get_json()["error"]["message"]
    assert client.get("/jobs").get_json()["total"] == 0
