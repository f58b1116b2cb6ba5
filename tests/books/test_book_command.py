"""`barkserve book` in-process: chapter selection, chapter voices, a zip of chapters, bad voice tags."""

import io
import zipfile
from pathlib import Path

import soundfile as sf
from click.testing import CliRunner

from barkserve.cli import main
from bookfiles import make_epub


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

    result = CliRunner().invoke(main, ["book", str(epub), "-o", str(out), *flags, *args(tiny_model_dir, tmp_path)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["01 - The Storm.wav", "02 - The Return.wav"]
        rates = [sf.read(io.BytesIO(archive.read(name)))[1] for name in archive.namelist()]
    assert rates == [24_000, 24_000]


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
