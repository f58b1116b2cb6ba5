"""Two chapters of two real books, in German and in French, all the way to a chaptered .m4b: uploaded to
POST /jobs with `chapters=`, run by the job runner (the fake engine's instant audio), read back with PyAV.
Each book is read by the preset voice of its language, chosen from the book's `dc:language`."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from test_corpus import EXPECTED, corpus_file

from barkserve.books.package import CHAPTER_GAP_SEC
from barkserve.jobs.runner import JobRunner
from support import FakeEngine

# (the corpus file, its language; chapters 2-3 are the second and third titles expected.json lists)
BOOKS = [
    ("/usr/share/doc/debian-history/docs/project-history.de.epub", "de"),  # DocBook XSL, EPUB 2
    ("built/ebookmaker-epub3/project-history.fr.epub", "fr"),  # Project Gutenberg's ebookmaker, EPUB 3
]
FAST = {"max_duration_sec": "0.1", "sentence_pause_sec": "0.1", "seed": "3"}


@pytest.mark.parametrize(("key", "language"), BOOKS, ids=[language for _, language in BOOKS])
def test_two_chapters_of_a_real_book_become_a_chaptered_m4b_in_its_language(
    make_app: Any, built_book: Callable[[str], Path], key: str, language: str
) -> None:
    path = corpus_file(key, built_book)
    expected = EXPECTED[key]
    titles = expected["first"][1:3]
    app = make_app(FakeEngine)
    client, state = app.test_client(), app.extensions["barkserve"]
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), "chapters": "2-3", **FAST}
    created = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert created.status_code == 202, created.data
    job = created.get_json()
    assert [c["title"] for c in job["chapters"]] == titles
    assert job["voice"] == f"v2/{language}_speaker_6"  # the default voice's speaker, in the book's language
    assert JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir).run_once()
    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded", done
    engine = state.synthesizer.engine(state.config.default_model)
    assert {r.voice.name for r in engine.requests} == {f"v2/{language}_speaker_6"}
    chunks = client.get(f"/jobs/{job['id']}/chunks").get_json()["chunks"]
    first_chunks = done["chapters"][0]["chunks_total"]
    assert first_chunks > 1 and len(chunks) > first_chunks and all(c["done"] for c in chunks)
    first_samples = sum(c["samples"] for c in chunks[:first_chunks])
    rate = engine.sample_rate

    m4b = client.get(f"/jobs/{job['id']}/audio")
    assert m4b.status_code == 200 and m4b.mimetype == "audio/mp4"
    with av.open(io.BytesIO(m4b.data)) as container:
        marks = container.chapters()
        assert [m["metadata"]["title"] for m in marks] == titles
        starts = [float(m["start"] * m["time_base"]) for m in marks]
        ends = [float(m["end"] * m["time_base"]) for m in marks]
        assert container.metadata["title"] == expected["title"]
        duration = container.duration / av.time_base
    # The first chapter starts at 0, the second where the first chapter's chunks and the gap after it end.
    assert starts == pytest.approx([0, first_samples / rate + CHAPTER_GAP_SEC], abs=1e-3)
    assert ends[0] == pytest.approx(starts[1], abs=1e-3) and ends[1] == pytest.approx(duration, abs=0.05)
