"""`barkserve say --captions`: a caption file beside the audio, on the tiny checkpoint."""

from __future__ import annotations

import html
import re
from pathlib import Path

import soundfile as sf
import srt
import webvtt
from click.testing import CliRunner, Result

from barkserve.captions import from_json
from barkserve.cli import main
from barkserve.testing.tiny import make_tiny_ctc

TEXT = "Hello  there! [laughs] The second sentence is here. MAN: And a third, cafe\u0301 style."


def say(tiny_model_dir: Path, out: Path, *extra: str) -> Result:
    args = ["say", TEXT, "-o", str(out), "--seed", "5", "--max-duration", "0.3", *extra]
    return CliRunner().invoke(main, [*args, "--model", str(tiny_model_dir), "--offline"])


def test_say_writes_vtt_captions_beside_the_audio(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = say(tiny_model_dir, tmp_path / "speech.wav", "--captions", "vtt")
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'speech.vtt'} (3 cues)" in result.output
    cues = webvtt.read(str(tmp_path / "speech.vtt"))
    assert [html.unescape(c.text) for c in cues] == [
        "Hello there!",
        "The second sentence is here.",
        "And a third, cafe\u0301 style.",
    ]
    audio, rate = sf.read(tmp_path / "speech.wav")
    assert cues[0].start == "00:00:00.000"  # the captions cover the audio, start to end
    assert cues[-1].end == f"00:00:{round(len(audio) / rate * 1000) / 1000:06.3f}"


def test_say_with_word_times_falls_back_with_a_warning_when_the_audio_is_too_short(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # 0.3 s of audio per chunk cannot hold ~60 letters at 50 frames per second: sentence timing stays.
    ctc = make_tiny_ctc(tmp_path / "ctc")
    result = say(tiny_model_dir, tmp_path / "s.wav", "--captions", "json", "--caption-words", "--align-model", str(ctc))
    assert result.exit_code == 0, result.output
    assert "warning: word timing failed" in result.output
    cues = from_json((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert len(cues) == 3 and all(c.words == () for c in cues)


def test_say_srt_keeps_the_original_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = say(tiny_model_dir, tmp_path / "s.flac", "--captions", "srt")
    assert result.exit_code == 0, result.output
    subtitles = list(srt.parse((tmp_path / "s.srt").read_text(encoding="utf-8")))
    expected = " ".join(re.sub(r"\[laughs\]|MAN:", " ", TEXT).split())
    assert " ".join(s.content for s in subtitles) == expected


def test_say_refuses_caption_words_without_captions(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = say(tiny_model_dir, tmp_path / "s.wav", "--caption-words")
    assert result.exit_code == 2 and "--caption-words needs --captions" in result.output
    assert not (tmp_path / "s.wav").exists()
    result = say(tiny_model_dir, tmp_path / "s.wav", "--captions", "ass")
    assert result.exit_code == 2 and "'srt', 'vtt', 'json'" in result.output
