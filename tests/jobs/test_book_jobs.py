"""Book jobs over HTTP: upload, per-chapter progress, voices per chapter and tag, resume, m4b / zip / one file."""

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt
from test_jobs import database_urls, fresh_url

from barkserve.audio.dsp import silence
from barkserve.books.package import CHAPTER_GAP_SEC
from barkserve.jobs import runner as runner_module
from bookfiles import CHAPTERS, add_encryption, make_blank_pdf, make_epub
from support import FakeEngine

FAST = {"max_duration_sec": "0.1", "sentence_pause_sec": "0.1", "seed": "9"}
TAGGED = (*CHAPTERS[:2], ("The Return", "When the sky cleared, [voice:v2/en_speaker_2] the sailors walked home."))


def upload(client: Any, path: Path, **fields: Any) -> Any:
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **FAST, **fields}
    return client.post("/jobs", data=data, content_type="multipart/form-data")


def chunk_audio(folder: Path, index: int) -> np.ndarray:
    return np.load(folder / f"chunk_{index:05d}.npz")["audio"]


@pytest.mark.parametrize("db", database_urls())
def test_an_epub_job_resumes_and_gives_a_chaptered_m4b(make_app: Any, tmp_path: Path, db: str) -> None:
    app = make_app(FakeEngine, database_url=fresh_url(db, tmp_path))
    client, state = app.test_client(), app.extensions["barkserve"]
    epub = make_epub(tmp_path / "b.epub", chapters=TAGGED)
    created = upload(client, epub, voice_preset="4", chapter_voices=json.dumps({"2": "v2/en_speaker_1"}))
    assert created.status_code == 202, created.data
    job = created.get_json()
    assert [c["title"] for c in job["chapters"]] == [name for name, _ in TAGGED]
    assert job["book"] == {"title": "Storm Over the Harbour", "author": "Ann Writer", "output": "m4b"}
    assert all(c["chunks_total"] is None and c["chunks_done"] == 0 for c in job["chapters"])
    assert client.get(f"/jobs/{job['id']}/captions").status_code == 409  # not made yet

    def interrupt_after_two(current: Any) -> None:
        if current.chunks_done == 2:
            raise KeyboardInterrupt

    first = runner_module.JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir, on_chunk=interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        first.run_once()
    halfway = client.get(f"/jobs/{job['id']}").get_json()
    assert [c["chunks_done"] for c in halfway["chapters"]] == [1, 1, 0]
    assert [c["chunks_total"] for c in halfway["chapters"]] == [1, 1, 2]  # the tag splits chapter 3 in two
    assert runner_module.JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir).run_once()

    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded" and [c["chunks_done"] for c in done["chapters"]] == [1, 1, 2]
    chunks = client.get(f"/jobs/{job['id']}/chunks").get_json()["chunks"]
    assert [c["attempts"] for c in chunks] == [1, 1, 1, 1]  # nothing made twice after the restart
    engine = state.synthesizer.engine(state.config.default_model)
    assert [r.options.seed for r in engine.requests] == [9, 10, 11, 12]  # numbered across the book
    voices = [r.voice.name for r in engine.requests]
    assert voices == ["v2/en_speaker_4", "v2/en_speaker_1", "v2/en_speaker_4", "v2/en_speaker_2"]
    assert chunks[3]["text"] == "the sailors walked home."  # the tag is not read aloud

    folder = state.config.jobs_dir / job["id"]
    pause = len(silence(0.1, 24_000))
    gap = round(CHAPTER_GAP_SEC * 24_000)
    lengths = [len(chunk_audio(folder, 0)), len(chunk_audio(folder, 1))]
    lengths.append(len(chunk_audio(folder, 2)) + pause + len(chunk_audio(folder, 3)))
    starts = np.cumsum([0, lengths[0] + gap, lengths[1] + gap])
    m4b = client.get(f"/jobs/{job['id']}/audio")
    assert m4b.status_code == 200 and m4b.mimetype == "audio/mp4"
    with av.open(io.BytesIO(m4b.data)) as container:
        marks = container.chapters()
        assert [m["metadata"]["title"] for m in marks] == [name for name, _ in TAGGED]
        assert [float(m["start"] * m["time_base"]) for m in marks] == pytest.approx(starts / 24_000, abs=1e-3)
        assert container.metadata["title"] == "Storm Over the Harbour" and container.metadata["artist"] == "Ann Writer"
        assert len(container.streams.video) == 1  # the cover
    wav = client.get(f"/jobs/{job['id']}/audio?format=wav")
    audio, _ = sf.read(io.BytesIO(wav.data))
    assert len(audio) == sum(lengths) + 2 * gap  # the whole book as one file on request

    # Captions: the book's text (tags and cues left out), in order, timed to the book's audio.
    cues = list(srt.parse(client.get(f"/jobs/{job['id']}/captions?format=srt").get_data(as_text=True)))
    expected = " ".join(f"{name}. {text}" for name, text in TAGGED).replace("[voice:v2/en_speaker_2] ", "")
    assert " ".join(c.content for c in cues) == expected.replace(" [laughs]", "")
    begins = [c.start.total_seconds() for c in cues]
    ends = [c.end.total_seconds() for c in cues]
    assert begins == sorted(begins) and all(b <= e for b, e in zip(begins, ends, strict=True))
    assert begins[0] == 0 and ends[-1] == pytest.approx(len(audio) / 24_000, abs=1e-3)
    chapter_firsts = [c.start.total_seconds() for c in cues if c.content.split(".")[0] in dict(TAGGED)]
    assert chapter_firsts == pytest.approx(starts / 24_000, abs=1e-3)  # each chapter's first caption at its mark
    vtt = webvtt.from_buffer(io.StringIO(client.get(f"/jobs/{job['id']}/captions?format=vtt").get_data(as_text=True)))
    assert [c.text for c in vtt] == [c.content for c in cues]
    as_json = client.get(f"/jobs/{job['id']}/captions?format=json").get_json()
    assert [c["text"] for c in as_json["cues"]] == [c.content for c in cues]
    assert as_json["warnings"] == [] and done["caption_words"] is False
    # What of the book is not read, and why, is the job's warning from the start.
    assert done["warnings"] == ["1 document(s) typed 'copyright-page' (epub:type): EPUB/copyright.xhtml"]
    assert client.get(f"/jobs/{job['id']}/captions?format=ass").status_code == 400
    # One chapter's captions: the book's, moved to the chapter's start, lasting to its end mark.
    third = list(srt.parse(client.get(f"/jobs/{job['id']}/captions?chapter=3").get_data(as_text=True)))
    book_third = cues[-len(third) :]
    assert [c.content for c in third] == [c.content for c in book_third]
    assert [c.start.total_seconds() for c in third] == pytest.approx(
        [c.start.total_seconds() - starts[2] / 24_000 for c in book_third], abs=1e-3
    )
    assert third[0].start.total_seconds() == 0 and third[-1].end.total_seconds() == pytest.approx(
        lengths[2] / 24_000, abs=1e-3
    )


@pytest.mark.parametrize(
    ("output", "fmt", "mimetype"), [("zip", "flac", "application/zip"), ("single", "wav", "audio/wav")]
)
def test_zip_of_chapters_or_one_file(make_app: Any, tmp_path: Path, output: str, fmt: str, mimetype: str) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    epub = make_epub(tmp_path / "b.epub")
    job = upload(client, epub, output=output, format=fmt, chapters="2-3").get_json()
    assert [c["title"] for c in job["chapters"]] == ["The Storm", "The Return"]
    while app.extensions["barkserve"].runner.run_once():
        pass
    answer = client.get(f"/jobs/{job['id']}/audio")
    assert answer.status_code == 200 and answer.mimetype == mimetype
    if output == "zip":
        with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
            stems = ("01 - The Storm", "02 - The Return")
            assert archive.namelist() == [f"{stem}.{ext}" for stem in stems for ext in ("flac", "srt", "vtt")]
    else:
        audio, rate = sf.read(io.BytesIO(answer.data))
        assert rate == 24_000 and len(audio) > CHAPTER_GAP_SEC * rate  # two chapters and the gap between


def without_cues(text: str) -> str:
    """What a caption shows of `text`: no voice tags, no Bark cues, white space folded."""
    return " ".join(re.sub(r"\[[^\[\]]*\]", " ", text).split())


def vtt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_a_zip_has_each_chapters_captions_beside_its_audio_timed_from_its_start(make_app: Any, tmp_path: Path) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    job = upload(client, make_epub(tmp_path / "b.epub", chapters=TAGGED), output="zip", format="flac").get_json()
    while app.extensions["barkserve"].runner.run_once():
        pass
    with zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job['id']}/audio").data)) as archive:
        stems = [f"{k:02d} - {title}" for k, (title, _) in enumerate(TAGGED, start=1)]
        assert archive.namelist() == [f"{stem}.{ext}" for stem in stems for ext in ("flac", "srt", "vtt")]
        files = {name: archive.read(name) for name in archive.namelist()}
    book = list(srt.parse(client.get(f"/jobs/{job['id']}/captions").get_data(as_text=True)))
    offset, seen = 0.0, 0
    for number, (stem, (title, text)) in enumerate(zip(stems, TAGGED, strict=True), start=1):
        audio, rate = sf.read(io.BytesIO(files[f"{stem}.flac"]))
        duration = len(audio) / rate  # the chapter's speech, and the gap after it but for the last
        subtitles = list(srt.parse(files[f"{stem}.srt"].decode("utf-8")))
        assert " ".join(s.content for s in subtitles) == without_cues(f"{title}. {text}")
        assert subtitles[0].start.total_seconds() == 0
        assert subtitles[-1].end.total_seconds() == pytest.approx(duration, abs=1e-3)
        vtt = webvtt.from_buffer(io.StringIO(files[f"{stem}.vtt"].decode("utf-8")))
        assert [c.text for c in vtt] == [s.content for s in subtitles]
        assert [t for c in vtt for t in (vtt_seconds(c.start), vtt_seconds(c.end))] == pytest.approx(
            [t for s in subtitles for t in (s.start.total_seconds(), s.end.total_seconds())], abs=1e-3
        )
        # The same captions over HTTP; they are the book's, moved back by the chapters before this one.
        got = client.get(f"/jobs/{job['id']}/captions?chapter={number}&format=srt")
        assert got.status_code == 200 and got.get_data(as_text=True) == files[f"{stem}.srt"].decode("utf-8")
        assert got.headers["Content-Disposition"].endswith(f'-chapter-{number:02d}.srt"')
        own = book[seen : seen + len(subtitles)]
        assert [c.content for c in own] == [s.content for s in subtitles]
        assert [c.start.total_seconds() - offset for c in own] == pytest.approx(
            [s.start.total_seconds() for s in subtitles], abs=1e-3
        )
        offset, seen = offset + duration, seen + len(subtitles)
    assert seen == len(book)


BAD_CHAPTERS = [("0", "from 1 to 3"), ("4", "from 1 to 3; got '4'"), ("-1", "from 1 to 3"), ("x", "got 'x'"),
                ("", "from 1 to 3"), ("1.0", "from 1 to 3")]  # fmt: skip


def test_a_chapter_the_job_does_not_have_is_a_clear_400(make_app: Any, tmp_path: Path) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    book = upload(client, make_epub(tmp_path / "b.epub"), output="zip", format="wav").get_json()
    text = client.post("/jobs", json={"text": "Hello there.", "seed": 1}).get_json()
    assert client.get(f"/jobs/{book['id']}/captions?chapter=1").status_code == 409  # not made yet
    while app.extensions["barkserve"].runner.run_once():
        pass
    for value, needle in BAD_CHAPTERS:
        got = client.get(f"/jobs/{book['id']}/captions?chapter={value}")
        error = got.get_json()["error"]
        assert got.status_code == 400 and error["code"] == "invalid_request", value
        assert error["message"].startswith("chapter must be an integer") and needle in error["message"], value
    got = client.get(f"/jobs/{text['id']}/captions?chapter=1")
    assert got.status_code == 400 and "text job" in got.get_json()["error"]["message"]
    assert client.get(f"/jobs/{text['id']}/captions").status_code == 200  # the whole text's, as before
    assert client.get("/jobs/0123/captions?chapter=1").status_code == 404
    # A job finished before chapters had captions of their own: a 404 that says so.
    (app.extensions["barkserve"].config.jobs_dir / book["id"] / "captions.chapter0002.json").unlink()
    got = client.get(f"/jobs/{book['id']}/captions?chapter=2")
    assert got.status_code == 404 and "captions per chapter" in got.get_json()["error"]["message"]
    assert client.get(f"/jobs/{book['id']}/captions?chapter=1").status_code == 200


def text_file(name: str, text: str) -> Any:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return make


BAD_UPLOADS = [
    ("drm epub", lambda p: add_encryption(make_epub(p / "b.epub")), {}, 400, "protected_book", "DRM"),
    ("corrupt zip", lambda p: p / "b.epub", {}, 400, "invalid_book", "damaged"),
    ("pdf without text", lambda p: make_blank_pdf(p / "b.pdf"), {}, 400, "invalid_book", "no text layer"),
    (
        "unknown voice tag",
        text_file("b.md", "# One\n\nHi.\n\n# Two\n\nSo.\nThen [voice:nobody] spoke."),
        {},
        400,
        "invalid_voice",
        "chapter 2 ('Two'), line 4 of the chapter: [voice:nobody]",
    ),
    ("too large", lambda p: make_epub(p / "b.epub"), {}, 413, "book_too_large", "max_book_bytes"),
    ("unsupported type", text_file("b.rtf", "{\\rtf1 hi}"), {}, 415, "unsupported_book_format", ".epub"),
    ("chapter out of range", lambda p: make_epub(p / "b.epub"), {"chapters": "4"}, 400, "invalid_request", "1-3"),
    ("voice for no chapter", lambda p: make_epub(p / "b.epub"), {"chapter_voices": '{"9": "1"}'}, 400, "", "[9]"),
    ("bad chapter voice", lambda p: make_epub(p / "b.epub"), {"chapter_voices": '{"1": "x"}'}, 400, "", "chapter 1"),
    ("bad output", lambda p: make_epub(p / "b.epub"), {"output": "mp4"}, 400, "invalid_request", "output"),
    ("text field too", lambda p: make_epub(p / "b.epub"), {"text": "hi"}, 400, "invalid_request", "unknown field"),
]


@pytest.mark.parametrize(
    ("case", "make", "fields", "status", "code", "needle"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS]
)
def test_bad_uploads_fail_before_any_job_exists(
    make_app: Any, tmp_path: Path, case: str, make: Any, fields: dict, status: int, code: str, needle: str
) -> None:
    app = make_app(FakeEngine, max_book_bytes=2_000 if case == "too large" else 16_777_216)
    client = app.test_client()
    if case == "corrupt zip":
        path = make_epub(tmp_path / "b.epub")
        path.write_bytes(path.read_bytes()[:-300])
    else:
        path = make(tmp_path)
    response = upload(client, path, **fields)
    assert response.status_code == status, response.data
    error = response.get_json()["error"]
    assert needle in error["message"] and error["code"].startswith(code)
    assert client.get("/jobs").get_json()["total"] == 0  # nothing queued
    jobs_dir = app.extensions["barkserve"].config.jobs_dir
    assert not [p for p in jobs_dir.iterdir() if p.is_dir()]  # and no job folder


def test_a_text_job_has_captions_too(make_app: Any) -> None:
    app = make_app(FakeEngine)
    client = app.test_client()
    text = "First sentence here. [sighs] Second one follows!  MAN: And a third?"
    job = client.post("/jobs", json={"text": text, "max_duration_sec": 0.1, "seed": 1}).get_json()
    while app.extensions["barkserve"].runner.run_once():
        pass
    cues = client.get(f"/jobs/{job['id']}/captions?format=json").get_json()["cues"]
    assert " ".join(c["text"] for c in cues) == "First sentence here. Second one follows! And a third?"
    audio, rate = sf.read(io.BytesIO(client.get(f"/jobs/{job['id']}/audio?format=wav").data))
    assert cues[0]["start"] == 0 and cues[-1]["end"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert client.get("/jobs/0123/captions").status_code == 404


class NoisyEngine(FakeEngine):
    """Noise at a level set by the seed, 0.1 s per text token: chapters of different loudness."""

    samples_per_token = 2_400

    def generate(self, request: Any) -> Any:
        out = super().generate(request)
        level = 0.01 * (1 + request.options.seed % 7)
        rng = np.random.default_rng(request.options.seed)
        out.audio[:] = (rng.standard_normal(len(out.audio)) * level).astype(np.float32)
        return out


def test_a_books_chapters_are_evened_and_a_text_job_keeps_its_level(make_app: Any, tmp_path: Path) -> None:
    import pyloudnorm

    from barkserve.books.package import TARGET_LUFS

    app = make_app(NoisyEngine)
    client, state = app.test_client(), app.extensions["barkserve"]
    book = upload(client, make_epub(tmp_path / "b.epub"), output="single", format="wav", chapters="1-2").get_json()
    text = client.post("/jobs", json={"text": "One short sentence to read.", "format": "wav", "seed": 3})
    assert text.status_code == 202, text.data
    text = text.get_json()
    runner = runner_module.JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir)
    while runner.run_once():
        pass
    meter = pyloudnorm.Meter(24_000)
    folder = state.config.jobs_dir / book["id"]
    audio, _ = sf.read(io.BytesIO(client.get(f"/jobs/{book['id']}/audio").data), dtype="float32")
    first = len(chunk_audio(folder, 0))
    chapters = [audio[:first], audio[first + round(CHAPTER_GAP_SEC * 24_000) :]]
    assert [meter.integrated_loudness(c.astype(np.float64)) for c in chapters] == pytest.approx(
        [TARGET_LUFS] * 2, abs=0.3
    )
    made, _ = sf.read(io.BytesIO(client.get(f"/jobs/{text['id']}/audio").data), dtype="float32")
    chunk = chunk_audio(state.config.jobs_dir / text["id"], 0)
    assert len(made) == len(chunk) and np.max(np.abs(made - chunk)) < 1e-4  # as generated: 16-bit, no gain
