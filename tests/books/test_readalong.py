"""Read-along books (EPUB 3 Media Overlays) through the real paths: POST /jobs with output=epub3 on real
books of the corpus, `barkserve book -o book.epub` on a made book, word-level overlays, and the fallback to
paragraphs. Each book is read back alone (lxml, PyAV) and validated by epubcheck."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from readalong_check import (
    audio_seconds,
    check_clips_match_captions,
    check_original_kept,
    epubcheck_errors,
    near,
    read_overlays,
)
from test_corpus import corpus_file

from barkserve.captions import Cue, from_json
from barkserve.cli import main
from barkserve.jobs.files import JobFiles
from barkserve.jobs.runner import JobRunner
from bookfiles import make_epub
from support import FakeEngine

FAST = {"max_duration_sec": "0.1", "sentence_pause_sec": "0.1", "seed": "3"}
FALLBACK = "paragraph(s) are highlighted whole"


class SpeakingEngine(FakeEngine):
    """FakeEngine at about a speaking rate (0.1 s a token), so that the aligner can place words."""

    samples_per_token = 2400


def run_job(app: Any, path: Path, **fields: str) -> tuple[dict[str, Any], bytes, dict[int, list[Cue]]]:
    """Upload a book with output=epub3, run its job; the finished job, its EPUB and each chapter's captions."""
    client, state = app.test_client(), app.extensions["barkserve"]
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), "output": "epub3", **FAST, **fields}
    created = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert created.status_code == 202, created.data
    job = created.get_json()
    assert JobRunner(state.jobs, state.synthesizer, state.config.jobs_dir).run_once()
    done = client.get(f"/jobs/{job['id']}").get_json()
    assert done["state"] == "succeeded", done
    book = client.get(f"/jobs/{job['id']}/audio")
    assert book.status_code == 200 and book.mimetype == "application/epub+zip"
    assert f"job-{job['id']}.epub" in book.headers["Content-Disposition"]
    files = JobFiles(state.config.jobs_dir, job["id"])
    captions = {
        k: from_json(files.captions(chapter=k + 1).read_text(encoding="utf-8")) for k in range(len(done["chapters"]))
    }
    return done, book.data, captions


# (corpus file, its own epubcheck errors): no corpus book passes epubcheck as it is, so the read-along
# book must add no error; pandoc's EPUB 2 is upgraded to EPUB 3.
REAL_BOOKS = [
    "built/ebookmaker-epub3/project-history.fr.epub",  # Project Gutenberg's ebookmaker, EPUB 3
    "built/pandoc-epub2/project-history.it.epub",  # pandoc, EPUB 2: written as EPUB 3
]


@pytest.mark.parametrize("key", REAL_BOOKS, ids=["ebookmaker-epub3", "pandoc-epub2"])
def test_a_real_book_becomes_a_read_along_epub3_with_its_own_pages(
    make_app: Any, built_book: Callable[[str], Path], tmp_path: Path, key: str
) -> None:
    path = corpus_file(key, built_book)
    source = path.read_bytes()
    done, data, captions = run_job(make_app(FakeEngine), path, chapters="2-4")
    clips, members = read_overlays(data)
    fallbacks = check_clips_match_captions(clips, captions)
    assert len(clips) > 20 and fallbacks < len(clips) / 4  # most sentences are marked one by one
    assert check_original_kept(source, members) >= 1
    # Each chapter's audio is in the book, as long as its captions.
    for chapter, cues in captions.items():
        audio = members[next(n for n in members if n.endswith(f"chapter{chapter + 1:04d}.mp3"))]
        assert audio_seconds(audio) == pytest.approx(cues[-1].end, abs=0.1)
    if fallbacks:
        assert any(FALLBACK in w for w in done["warnings"])
    out = tmp_path / "readalong.epub"
    out.write_bytes(data)
    before, after = epubcheck_errors(path), epubcheck_errors(out)
    assert after <= before, sorted(after - before)  # no error the book did not have
    if "epub2" in key:
        assert any("written as EPUB 3" in w for w in done["warnings"])


def test_a_markdown_book_becomes_a_plain_epub3_that_epubcheck_accepts(tiny_model_dir: Path, tmp_path: Path) -> None:
    book = tmp_path / "notes.md"
    book.write_text(
        "# The Harbour\n\nThe boats came in at dawn. Nobody expected the storm!\n\n"
        "# The Storm\n\nIt broke at noon. The *old* pier held; the new one did not.\n",
        encoding="utf-8",
    )
    out = tmp_path / "notes-readalong.epub"
    folders = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    result = CliRunner().invoke(main, ["book", str(book), "-o", str(out), *folders, "--max-duration", "0.2"])
    assert result.exit_code == 0, result.output
    job_id = re.search(r"job ([0-9a-f]{32})\)", result.output).group(1)  # type: ignore[union-attr]
    files = JobFiles(tmp_path / "jobs", job_id)
    captions = {k: from_json(files.captions(chapter=k + 1).read_text(encoding="utf-8")) for k in range(2)}
    clips, _members = read_overlays(out.read_bytes())
    assert check_clips_match_captions(clips, captions) == 0  # every sentence in its own span
    # A made page shows the text as read: the heading with the full stop the reader gives it.
    assert ["".join(c.element.itertext()) for c in clips[:3]] == [
        "The Harbour.",
        "The boats came in at dawn.",
        "Nobody expected the storm!",
    ]
    assert epubcheck_errors(out) == set()


def test_word_captions_give_a_par_per_word(make_app: Any, tmp_path: Path) -> None:
    from barkserve.testing.tiny import make_tiny_ctc

    ctc = str(make_tiny_ctc(tmp_path / "ctc"))
    chapters = (("The Harbour", "The boats came in at dawn."), ("The Storm", "Nobody expected it."))
    epub = make_epub(tmp_path / "b.epub", chapters=chapters, footnote=False)
    _done, data, captions = run_job(make_app(SpeakingEngine, align_model=ctc), epub, caption_words="true")
    assert all(c.words for cues in captions.values() for c in cues)
    clips, _members = read_overlays(data)
    assert check_clips_match_captions(clips, captions, words=True) == 0
    words = [w.text for cues in captions.values() for c in cues for w in c.words]
    # The page's words, but for the full stop the reader gives each heading.
    headings = {"Harbour.", "Storm."}
    assert ["".join(c.element.itertext()) for c in clips] == [w.rstrip(".") if w in headings else w for w in words]
    out = tmp_path / "words.epub"
    out.write_bytes(data)
    assert epubcheck_errors(out) <= epubcheck_errors(epub)


def test_a_sentence_across_inline_markup_falls_back_to_its_paragraph(make_app: Any, tmp_path: Path) -> None:
    # "She said go." ends inside <em>: a span cannot hold it without splitting the <em>.
    chapters = (("Crossing", "She said <em>go. Now</em> we run. The end is near."),)
    epub = make_epub(tmp_path / "b.epub", chapters=chapters, footnote=False)
    done, data, captions = run_job(make_app(FakeEngine), epub)
    assert any(FALLBACK in w for w in done["warnings"]), done["warnings"]
    clips, members = read_overlays(data)
    assert check_clips_match_captions(clips, captions) == 1
    paragraph = [c for c in clips if c.element.tag.endswith("}p")]
    assert (
        len(paragraph) == 1 and "".join(paragraph[0].element.itertext()) == "She said go. Now we run. The end is near."
    )
    # The paragraph's three sentences share its par: from the first one's start to the last one's end.
    body = [c for c in captions[0] if c.text != "Crossing."]
    assert near(paragraph[0].begin, body[0].start) and near(paragraph[0].end, body[-1].end)
    assert check_original_kept(epub.read_bytes(), members) == 1
    out = tmp_path / "fallback.epub"
    out.write_bytes(data)
    assert epubcheck_errors(out) <= epubcheck_errors(epub)
