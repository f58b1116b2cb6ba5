"""`barkserve book` in-process: chapter selection, chapter voices, a zip of chapters, bad voice tags."""

import io
import json
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import srt
from click.testing import CliRunner

from barkserve.captions import from_json
from barkserve.cli import main
from bookfiles import CHAPTERS, make_epub


def args(tiny_model_dir: Path, tmp_path: Path, max_duration: str = "0.2") -> list[str]:
    folders = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    return [*folders, "--max-duration", max_duration]


def test_chapters_and_chapter_voices_into_a_zip(tiny_model_dir: Path, tmp_path: Path) -> None:
    epub = make_epub(tmp_path / "b.epub")
    out = tmp_path / "b.zip"
    flags = ["--chapters", "2-3", "--chapter-voice", "3=v2/de_speaker_1", "--chapter-format", "wav", "--seed", "2"]
    plan = CliRunner().invoke(main, ["book", str(epub), "--plan", *flags, *args(tiny_model_dir, tmp_path)])
    assert plan.exit_code == 0, plan.output
    lines = plan.output.splitlines()
    assert any(line.split()[:1] == ["2"] and "v2/en_speaker_6" in line and "The Storm" in line for line in lines)
    assert any(line.split()[:1] == ["3"] and "v2/de_speaker_1" in line and "The Return" in line for line in lines)
    assert not any("The Harbour" in line for line in lines)

    cmd = ["book", str(epub), "-o", str(out), "--captions", "json", *flags, *args(tiny_model_dir, tmp_path)]
    result = CliRunner().invoke(main, cmd)
    assert result.exit_code == 0, result.output
    assert "each chapter's captions (json) are in b.zip beside its audio" in result.output
    stems = ["01 - The Storm", "02 - The Return"]
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [f"{s}.{ext}" for s in stems for ext in ("wav", "srt", "vtt")] + [
            f"{s}.json" for s in stems
        ]
        files = {name: archive.read(name) for name in archive.namelist()}
    assert not list(tmp_path.glob("b.json")) and not list(tmp_path.glob("b.srt"))  # in the zip, not beside it
    for stem, (title, text) in zip(stems, CHAPTERS[1:], strict=True):
        audio, rate = sf.read(io.BytesIO(files[f"{stem}.wav"]))
        assert rate == 24_000
        cues = from_json(files[f"{stem}.json"].decode("utf-8"))
        assert " ".join(c.text for c in cues) == f"{title}. {text}"
        assert cues[0].start == 0 and cues[-1].end == pytest.approx(len(audio) / rate, abs=1e-3)
        subtitles = list(srt.parse(files[f"{stem}.srt"].decode("utf-8")))
        assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subtitles] == [
            (pytest.approx(c.start, abs=1e-3), pytest.approx(c.end, abs=1e-3), c.text) for c in cues
        ]


def test_an_unknown_voice_tag_stops_the_command_before_any_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    book = tmp_path / "b.txt"
    book.write_text("Chapter 1\nHello.\n\nChapter 2\nWell.\n[voice:nobody] Hi.", encoding="utf-8")
    out = tmp_path / "b.m4b"
    result = CliRunner().invoke(main, ["book", str(book), "-o", str(out), *args(tiny_model_dir, tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "chapter 2 ('Chapter 2'), line 3 of the chapter: [voice:nobody]" in result.output
    assert not out.exists() and not (tmp_path / "jobs" / "barkserve.db").exists()


def test_a_book_over_the_size_limit(tiny_model_dir: Path, tmp_path: Path) -> None:
    epub = make_epub(tmp_path / "b.epub")
    env = {"BARKSERVE_MAX_BOOK_BYTES": "1000"}
    cmd = ["book", str(epub), "-o", str(tmp_path / "b.m4b"), *args(tiny_model_dir, tmp_path)]
    result = CliRunner().invoke(main, cmd, env=env)
    assert result.exit_code == 1 and "max_book_bytes" in result.output


def test_word_captions_of_a_book(tiny_model_dir: Path, tmp_path: Path) -> None:
    from barkserve.captions import from_json
    from barkserve.testing.tiny import make_tiny_ctc

    ctc = make_tiny_ctc(tmp_path / "ctc")
    epub = make_epub(tmp_path / "b.epub")
    flags = ["--captions", "json", "--caption-words", "--align-model", str(ctc), "--seed", "1"]
    # Chunks of up to 3 s: long enough to hold their letters at the aligner's 50 frames a second.
    cmd = ["book", str(epub), "-o", str(tmp_path / "b.m4b"), *flags, *args(tiny_model_dir, tmp_path, "3.0")]
    result = CliRunner().invoke(main, cmd)
    assert result.exit_code == 0, result.output
    cues = from_json((tmp_path / "b.json").read_text(encoding="utf-8"))
    timed = [c for c in cues if c.words]
    assert timed, result.output  # words were aligned in at least one window
    for cue in timed:
        assert [w.text for w in cue.words] == cue.text.split()
        assert all(cue.start - 1e-3 <= w.start <= w.end <= cue.end + 1e-3 for w in cue.words)
    assert len(timed) == len(cues) or "warning: word timing failed" in result.output


def test_plan_json_shows_the_language_its_voice_first_words_and_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    book = tmp_path / "buch.md"
    book.write_text(
        "# Der Hafen\n\nDie Boote kamen im Morgengrauen zurück, und niemand hatte mit dem Sturm gerechnet, "
        "der über das Dorf zog.\n\n# Leer\n\n# Der Sturm\n\nEs regnete drei Tage lang. Das Dorf wartete an den "
        "Feuern, bis der Himmel wieder klar war und die Seeleute nach Hause gingen.\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["book", str(book), "--plan", "--json", *args(tiny_model_dir, tmp_path)])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["language"] == "de" and view["voice"] == "v2/de_speaker_6"  # the default's speaker, in German
    first, empty, last = view["chapters"]
    assert first["voices"] == ["v2/de_speaker_6"] and first["language"] == "de"
    assert first["first_words"].startswith("Der Hafen. Die Boote kamen")
    assert first["words"] == len(first["first_words"].split()) + 8 and first["chunks"] >= 1
    assert empty["flags"] == ["only a title"] and first["flags"] == [] == last["flags"]
    named = CliRunner().invoke(main, ["book", str(book), "--plan", "--voice", "3", *args(tiny_model_dir, tmp_path)])
    assert named.exit_code == 0 and "v2/en_speaker_3" in named.output and "de_speaker" not in named.output
