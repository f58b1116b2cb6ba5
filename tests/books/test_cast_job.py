"""A full-cast book end to end on the tiny checkpoint: `book --plan --cast auto` writes the cast sheet, the
user edits it, `book --cast cast.json` reads each speaker in the sheet's voice, with chapters and captions;
a run stopped halfway resumes without making any chunk again. Also: the book form's `cast` over HTTP."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import srt
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.cli.book import BookProgress
from barkserve.config import ServerConfig
from barkserve.jobs import JobStore
from barkserve.jobs.book import plan_chapters
from barkserve.synthesizer import Synthesizer

STORY = """The Visit

"Where have you been?" said Mrs. Hale.

"In the garden," replied Tom.

"All day?"

"All day, aunt."

The Night

Tom went in. "Goodnight," he said. "Goodnight, Tom," said Mrs. Hale.
"""


def args(tiny_model_dir: Path, tmp_path: Path) -> list[str]:
    folders = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    return [*folders, "--max-duration", "0.2", "--seed", "3"]


def story(tmp_path: Path) -> Path:
    path = tmp_path / "story.md"
    path.write_text(STORY.replace("The Visit", "# The Visit").replace("The Night", "# The Night"), encoding="utf-8")
    return path


def test_a_full_cast_book_from_plan_to_resumed_job(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book, sheet_path = story(tmp_path), tmp_path / "cast.json"
    plan = CliRunner().invoke(
        main, ["book", str(book), "--plan", "--cast", "auto", "--cast-sheet", str(sheet_path),
               *args(tiny_model_dir, tmp_path)],
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    sheet = json.loads(sheet_path.read_text(encoding="utf-8"))
    lines = {s["name"]: s["lines"] for s in sheet["speakers"]}
    assert lines == {"Mrs. Hale": 3, "Tom": 3}
    assert "Mrs. Hale" in plan.output and "narrator v2/en_speaker_6" in plan.output
    # The user's edit: Tom in speaker 2, Mrs. Hale also known as "aunt" (no line of hers says so).
    for speaker in sheet["speakers"]:
        if speaker["name"] == "Tom":
            speaker["voice"] = "v2/en_speaker_2"
    sheet_path.write_text(json.dumps(sheet), encoding="utf-8")
    hale = next(s["voice"] for s in sheet["speakers"] if s["name"] == "Mrs. Hale")

    out = tmp_path / "story.m4b"
    cmd = ["book", str(book), "-o", str(out), "--cast", str(sheet_path), "--captions", "srt",
           *args(tiny_model_dir, tmp_path)]  # fmt: skip
    real_update = BookProgress.update

    def stop_after_three(self: Any, job: Any) -> None:
        real_update(self, job)
        if job.chunks_done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(BookProgress, "update", stop_after_three)
    stopped = CliRunner().invoke(main, cmd)
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.setattr(BookProgress, "update", real_update)
    config = ServerConfig.from_sources({"jobs_dir": tmp_path / "jobs"})
    store = JobStore(config.database)
    (job,) = store.page(10, 0)[0]
    made = {c.index: (config.jobs_dir / job.id / f"chunk_{c.index:05d}.npz").stat().st_mtime_ns
            for c in store.chunks(job.id) if c.done}  # fmt: skip
    assert len(made) == 3

    done = CliRunner().invoke(main, cmd)
    assert done.exit_code == 0, done.output
    assert f"resuming job {job.id} (3 chunks done)" in done.output
    chunks = store.chunks(job.id)
    assert all(c.done and c.attempts == 1 for c in chunks)  # nothing made twice
    for index, mtime in made.items():  # the chunks made before the stop were not written again
        assert (config.jobs_dir / job.id / f"chunk_{index:05d}.npz").stat().st_mtime_ns == mtime

    chapters = store.book(job.id).chapters
    assert [c["title"] for c in chapters] == ["The Visit", "The Night"]
    segments = [s for c in chapters for s in c["segments"]]
    voices = {(s.get("speaker"), s["voice"]) for s in segments}
    assert voices == {(None, "v2/en_speaker_6"), ("Tom", "v2/en_speaker_2"), ("Mrs. Hale", hale)}
    tom = [s["text"].strip() for s in segments if s.get("speaker") == "Tom"]
    assert tom == ['"In the garden,"', '"All day, aunt."', '"Goodnight,"']
    assert "".join(s["text"] for s in chapters[0]["segments"]).startswith('The Visit.\n\n"Where have you been?"')

    cues = list(srt.parse(out.with_suffix(".srt").read_text(encoding="utf-8")))
    said = " ".join(c.content for c in cues)
    for line in ['"Where have you been?"', '"In the garden,"', '"Goodnight, Tom,"']:
        assert line in said
    assert out.stat().st_size > 0


def test_segments_of_one_voice_share_quality_controls_reference(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = ServerConfig.from_sources({"model": str(tiny_model_dir), "offline": True, "jobs_dir": tmp_path})
    synth = Synthesizer(config)
    try:
        chapters = [
            {"title": "1", "segments": [{"voice": "v2/en_speaker_6", "text": "Narration here."},
                                        {"voice": "v2/en_speaker_2", "text": '"A line."', "speaker": "Tom"}]},
            {"title": "2", "segments": [{"voice": "v2/en_speaker_6", "text": "More narration."},
                                        {"voice": "v2/en_speaker_2", "text": '"Another."', "speaker": "Tom"}]},
        ]  # fmt: skip
        plans = plan_chapters(synth, chapters, config.default_model, {"seed": 1}).plans
    finally:
        synth.close()
    assert plans[0]._reference is plans[2]._reference  # the narrator's, across chapters
    assert plans[1]._reference is plans[3]._reference  # Tom's
    assert plans[0]._reference is not plans[1]._reference


def test_the_book_form_takes_a_cast(make_app: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    app = make_app()
    client = app.test_client()

    def plan(**fields: Any) -> Any:
        data = {"file": (io.BytesIO(story(tmp_path).read_bytes()), "story.md"), **fields}
        return client.post("/books/plan", data=data, content_type="multipart/form-data")

    auto = plan(cast="auto")
    assert auto.status_code == 200, auto.data
    sheet = auto.get_json()["cast"]
    assert {s["name"] for s in sheet["speakers"]} == {"Mrs. Hale", "Tom"}
    assert auto.get_json()["chapters"][0]["voices"][0] == "v2/en_speaker_6"
    sheet["speakers"][0]["voice"] = "v2/en_speaker_404"
    bad = client.post(
        "/jobs",
        data={"file": (io.BytesIO(story(tmp_path).read_bytes()), "story.md"), "cast": json.dumps(sheet)},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_voice"
    assert sheet["speakers"][0]["name"] in bad.get_json()["error"]["message"]
    assert app.extensions["barkserve"].jobs.page(10, 0)[1] == 0  # nothing queued
    assert plan(cast="{nope").get_json()["error"]["code"] == "invalid_request"
    assert plan().get_json()["cast"] is None


def test_bad_cast_options_stop_the_command_before_any_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    book, out = story(tmp_path), tmp_path / "story.m4b"
    bad_sheet = tmp_path / "bad.json"
    bad_sheet.write_text(json.dumps({"speakers": [{"name": "Tom", "voice": "v2/en_speaker_77"}]}), encoding="utf-8")
    for flags, words in [
        (["--cast", str(bad_sheet)], "cast sheet speaker 'Tom'"),
        (["--cast", str(tmp_path / "missing.json")], "neither 'auto' nor a cast sheet file"),
        (["--cast-llm", "http://127.0.0.1:9/v1"], "give --cast auto"),
    ]:
        result = CliRunner().invoke(main, ["book", str(book), "-o", str(out), *flags, *args(tiny_model_dir, tmp_path)])
        assert result.exit_code != 0 and words in result.output, result.output
    assert not (tmp_path / "jobs").exists()  # run_book makes it: no job was submitted
    assert not out.exists()
