"""Word captions of durable jobs (`caption_words` on POST /jobs): stored with the job, aligned when the
audio is assembled (after a crash too), falling back to sentence timing with warnings, never failing."""

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import srt
import webvtt
from sqlalchemy import inspect
from test_jobs import database_urls, fresh_url

from barkserve.db import make_db_engine
from barkserve.jobs import runner as runner_module
from barkserve.testing.tiny import make_tiny_ctc
from bookfiles import CHAPTERS, make_epub
from support import FakeEngine

TEXT = "The boats came in at dawn. Nobody expected the storm that followed them home."


class SpeakingEngine(FakeEngine):
    """FakeEngine at about a speaking rate: 0.1 s per text token (its 10 ms is too short to align letters)."""

    samples_per_token = 2400


@pytest.fixture(scope="module")
def ctc(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_tiny_ctc(tmp_path_factory.mktemp("ctc")))


def upload(client: Any, path: Path, **fields: Any) -> Any:
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), "seed": "3", **fields}
    return client.post("/jobs", data=data, content_type="multipart/form-data")


def run_all(app: Any) -> None:
    while app.extensions["barkserve"].runner.run_once():
        pass


def check_words(cues: list[dict[str, Any]]) -> None:
    """Every cue has its words, its text split at white space, in order and inside the cue."""
    for cue in cues:
        assert [w["text"] for w in cue["words"]] == cue["text"].split()
        times = [t for w in cue["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and cue["start"] <= times[0] and times[-1] <= cue["end"]


# What the reader leaves out of the test book (its copyright page), said in the job's warnings.
SKIPPED = ["1 document(s) typed 'copyright-page' (epub:type): EPUB/copyright.xhtml"]


@pytest.mark.parametrize("db", database_urls())
def test_a_book_with_word_captions_resumes_after_a_crash_and_is_aligned(
    make_app: Any, tmp_path: Path, ctc: str, db: str
) -> None:
    url = fresh_url(db, tmp_path)
    app = make_app(SpeakingEngine, align_model=ctc, database_url=url)
    client, state = app.test_client(), app.extensions["barkserve"]
    created = upload(client, make_epub(tmp_path / "b.epub"), caption_words="true", output="zip", format="wav")
    assert created.status_code == 202, created.data
    job = created.get_json()
    assert job["caption_words"] is True and job["warnings"] == SKIPPED

    def crash_after_two(current: Any) -> None:
        if current.chunks_done == 2:
            raise KeyboardInterrupt

    first = runner_module.JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir, on_chunk=crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        first.run_once()
    # A new process on the same store: the option comes back from the database, not from memory.
    state.jobs.db.dispose()
    again = make_app(SpeakingEngine, align_model=ctc, database_url=url)
    assert again.extensions["barkserve"].jobs.get(job["id"]).caption_words is True
    run_all(again)
    client = again.test_client()
    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded" and done["caption_words"] is True and done["warnings"] == SKIPPED
    assert [c["attempts"] for c in client.get(f"/jobs/{job['id']}/chunks").get_json()["chunks"]] == [1, 1, 1]

    book = client.get(f"/jobs/{job['id']}/captions?format=json").get_json()
    assert book["warnings"] == [] and len(book["cues"]) >= 2 * len(CHAPTERS)
    check_words(book["cues"])
    with zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job['id']}/audio").data)) as archive:
        for number, (title, _) in enumerate(CHAPTERS, start=1):
            stem = f"{number:02d} - {title}"
            audio, rate = sf.read(io.BytesIO(archive.read(f"{stem}.wav")))
            chapter = client.get(f"/jobs/{job['id']}/captions?chapter={number}&format=json").get_json()
            check_words(chapter["cues"])
            assert chapter["cues"][0]["start"] == 0
            assert chapter["cues"][-1]["end"] == pytest.approx(len(audio) / rate, abs=1e-3)
            # SRT: one subtitle per word; WebVTT: a cue per sentence, a timestamp tag before each later word.
            words = [w for c in chapter["cues"] for w in c["words"]]
            subtitles = list(srt.parse(archive.read(f"{stem}.srt").decode("utf-8")))
            assert [s.content for s in subtitles] == [w["text"] for w in words]
            assert [s.start.total_seconds() for s in subtitles] == pytest.approx([w["start"] for w in words], abs=1e-3)
            vtt = list(webvtt.from_buffer(io.StringIO(archive.read(f"{stem}.vtt").decode("utf-8"))))
            assert len(vtt) == len(chapter["cues"])
            tagged = [c for c in vtt if len(c.text.split()) > 1]
            assert tagged and all("<00:" in c.raw_text for c in tagged)


def test_word_timing_that_fails_keeps_sentence_captions_and_the_job_says_where(
    make_app: Any, tmp_path: Path, ctc: str
) -> None:
    # FakeEngine's 10 ms per token is too little audio to hold the text's letters: every window falls back.
    app = make_app(FakeEngine, align_model=ctc)
    client = app.test_client()
    text = client.post("/jobs", json={"text": TEXT, "seed": 1, "caption_words": True}).get_json()
    book = upload(client, make_epub(tmp_path / "b.epub"), caption_words="true", output="m4b").get_json()
    run_all(app)
    done = client.get(f"/jobs/{text['id']}").get_json()
    assert done["state"] == "succeeded" and done["warnings"]
    assert all("cannot hold" in w and "sentence timing" in w for w in done["warnings"])
    captions = client.get(f"/jobs/{text['id']}/captions?format=json").get_json()
    assert captions["warnings"] == done["warnings"]
    assert " ".join(c["text"] for c in captions["cues"]) == TEXT and all(c["words"] == [] for c in captions["cues"])

    done = client.get(f"/jobs/{book['id']}").get_json()
    assert done["state"] == "succeeded" and done["warnings"][: len(SKIPPED)] == SKIPPED  # the book's own first
    timing = done["warnings"][len(SKIPPED) :]
    assert [w.split(":")[0] for w in timing] == [f"chapter {k}" for k in range(1, len(CHAPTERS) + 1)]
    assert client.get(f"/jobs/{book['id']}/captions?format=json").get_json()["warnings"] == timing
    second = client.get(f"/jobs/{book['id']}/captions?format=json&chapter=2").get_json()
    assert second["warnings"] == [timing[1]] and all(c["words"] == [] for c in second["cues"])


def test_an_aligner_gone_after_a_restart_keeps_sentence_timing(make_app: Any, tmp_path: Path, ctc: str) -> None:
    app = make_app(SpeakingEngine, align_model=ctc)
    job = app.test_client().post("/jobs", json={"text": TEXT, "seed": 1, "caption_words": True}).get_json()
    app.extensions["barkserve"].jobs.db.dispose()
    restarted = make_app(SpeakingEngine, align_model=str(tmp_path / "moved-away"))
    run_all(restarted)
    client = restarted.test_client()
    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded"
    (warning,) = done["warnings"]
    assert warning.startswith("word timing was skipped") and "moved-away" in warning
    captions = client.get(f"/jobs/{job['id']}/captions?format=json").get_json()
    assert captions["warnings"] == [warning] and all(c["words"] == [] for c in captions["cues"])
    audio, rate = sf.read(io.BytesIO(client.get(f"/jobs/{job['id']}/audio?format=wav").data))
    assert captions["cues"][-1]["end"] == pytest.approx(len(audio) / rate, abs=1e-3)


def test_an_aligner_that_cannot_load_is_refused_before_any_job_exists(make_app: Any, tmp_path: Path) -> None:
    app = make_app(FakeEngine, align_model=str(tmp_path / "no-such-ctc"))
    client = app.test_client()
    epub = make_epub(tmp_path / "b.epub")
    for got in (
        client.post("/jobs", json={"text": TEXT, "caption_words": True}),
        upload(client, epub, caption_words="true"),
    ):
        assert got.status_code == 503, got.data
        error = got.get_json()["error"]
        assert error["code"] == "aligner_unavailable" and "align_model" in error["message"]
    assert client.get("/jobs").get_json()["total"] == 0
    assert client.post("/jobs", json={"text": TEXT, "caption_words": False}).status_code == 202  # not needed: fine
    off = make_app(FakeEngine, align_model="").test_client()
    got = off.post("/jobs", json={"text": TEXT, "caption_words": True})
    assert got.status_code == 400 and "no align_model" in got.get_json()["error"]["message"]


BAD = [
    ("json", "yes", "caption_words must be true or false; got 'yes'"),
    ("json", 1, "caption_words must be true or false; got 1"),
    ("json", None, "caption_words must be true or false; got None"),
    ("form", "yes", "form field 'caption_words'"),
    ("form", "1", "caption_words must be true or false; got 1"),
    ("form", '"true"', "caption_words must be true or false; got 'true'"),
]


@pytest.mark.parametrize(("how", "value", "message"), BAD)
def test_a_bad_caption_words_is_a_clear_400(make_app: Any, tmp_path: Path, how: str, value: Any, message: str) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    if how == "json":
        got = client.post("/jobs", json={"text": TEXT, "caption_words": value})
    else:
        got = upload(client, make_epub(tmp_path / "b.epub"), caption_words=value)
    assert got.status_code == 400 and got.get_json()["error"]["code"] == "invalid_request"
    assert message in got.get_json()["error"]["message"]
    assert client.get("/jobs").get_json()["total"] == 0


def test_an_idempotency_key_tells_word_captions_apart(make_app: Any, ctc: str) -> None:
    client = make_app(FakeEngine, align_model=ctc).test_client()
    headers = {"Idempotency-Key": "k1"}
    first = client.post("/jobs", json={"text": TEXT, "caption_words": True, "seed": 1}, headers=headers)
    assert first.status_code == 202
    again = client.post("/jobs", json={"text": TEXT, "caption_words": True, "seed": 1}, headers=headers)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    other = client.post("/jobs", json={"text": TEXT, "seed": 1}, headers=headers)
    assert other.status_code == 409


@pytest.mark.parametrize("db", database_urls())
def test_a_job_stored_before_word_captions_existed_still_runs(make_app: Any, tmp_path: Path, db: str) -> None:
    url = fresh_url(db, tmp_path)
    app = make_app(FakeEngine, database_url=url)
    job = app.test_client().post("/jobs", json={"text": TEXT, "seed": 1}).get_json()
    app.extensions["barkserve"].jobs.db.dispose()
    engine = make_db_engine(url)
    with engine.begin() as conn:  # the jobs table as the version before word captions made it
        conn.exec_driver_sql("ALTER TABLE jobs DROP COLUMN caption_words")
        conn.exec_driver_sql("ALTER TABLE jobs DROP COLUMN warnings")
        assert not {"caption_words", "warnings"} & {c["name"] for c in inspect(conn).get_columns("jobs")}
    engine.dispose()
    upgraded = make_app(FakeEngine, database_url=url)  # the store adds the columns back, empty
    client = upgraded.test_client()
    view = client.get(f"/jobs/{job['id']}").get_json()
    assert view["state"] == "queued" and view["caption_words"] is False and view["warnings"] == []
    run_all(upgraded)
    assert client.get(f"/jobs/{job['id']}").get_json()["state"] == "succeeded"
    cues = client.get(f"/jobs/{job['id']}/captions?format=json").get_json()["cues"]
    assert " ".join(c["text"] for c in cues) == TEXT and all(c["words"] == [] for c in cues)
    assert cues[0]["start"] == 0
