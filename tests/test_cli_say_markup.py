"""`barkserve say --ssml/--lexicon/--normalize`: the API's markup and pronunciation fields on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import srt
from click.testing import CliRunner, Result

from barkserve.cli import main


def say(tiny_model_dir: Path, text: str, out: Path, *extra: str) -> Result:
    args = ["say", text, "-o", str(out), "--seed", "3", "--max-duration", "0.3", *extra]
    return CliRunner().invoke(main, [*args, "--model", str(tiny_model_dir), "--offline"])


def said_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("said as: ")]


def longest_silence(path: Path) -> float:
    """The longest run of exact zeros in an audio file, in seconds (Bark's audio is never exactly 0 for long)."""
    audio, rate = sf.read(path)
    best = run = 0
    for zero in np.asarray(audio) == 0:
        run = run + 1 if zero else 0
        best = max(best, run)
    return best / rate


def test_a_lexicon_file_respells_what_bark_is_given_and_captions_keep_the_text(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    lexicon = tmp_path / "names.json"
    lexicon.write_text(json.dumps({"en": {"Nguyen": "win"}}), encoding="utf-8")
    text = "Nguyen is here."
    result = say(tiny_model_dir, text, tmp_path / "a.wav", "--lexicon", str(lexicon), "--captions", "srt")
    assert result.exit_code == 0, result.output
    assert said_lines(result) == ["said as: 'win is here.' (written 'Nguyen is here.')"]
    assert [s.content for s in srt.parse((tmp_path / "a.srt").read_text(encoding="utf-8"))] == [text]
    # Without the flag the word is said as written.
    plain = say(tiny_model_dir, text, tmp_path / "b.wav")
    assert plain.exit_code == 0, plain.output
    assert said_lines(plain) == []


def test_normalization_is_on_by_default_and_no_normalize_turns_it_off(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = "It costs $5."
    spelled = say(tiny_model_dir, text, tmp_path / "a.wav")
    assert spelled.exit_code == 0, spelled.output
    assert said_lines(spelled) == ["said as: 'It costs five US dollars.' (written 'It costs $5.')"]
    asked = say(tiny_model_dir, text, tmp_path / "b.wav", "--normalize")
    assert said_lines(asked) == said_lines(spelled)
    kept = say(tiny_model_dir, text, tmp_path / "c.wav", "--no-normalize")
    assert kept.exit_code == 0, kept.output
    assert said_lines(kept) == []


def test_ssml_break_adds_silence_of_the_stated_length(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "speak.wav"
    result = say(tiny_model_dir, '<speak>Hello there.<break time="1500ms"/>Good night.</speak>', out)
    assert result.exit_code == 0, result.output
    assert "in 2 chunk(s)" in result.output
    assert longest_silence(out) == pytest.approx(1.5, abs=0.01)


def test_ssml_flag_reads_text_without_a_speak_root_as_ssml(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = 'Hello there.<break time="2s"/>Good <sub alias="evening">eve</sub>.'
    marked = say(tiny_model_dir, text, tmp_path / "a.wav", "--ssml", "--captions", "srt")
    assert marked.exit_code == 0, marked.output
    assert longest_silence(tmp_path / "a.wav") == pytest.approx(2.0, abs=0.01)
    assert "said as: 'Good evening.' (written 'Good eve.')" in said_lines(marked)
    captions = " ".join(s.content for s in srt.parse((tmp_path / "a.srt").read_text(encoding="utf-8")))
    assert "<" not in captions and "Good eve." in captions
    # By its look (no <speak>) the same text is plain: no 2 s break.
    looked = say(tiny_model_dir, text.replace("<sub", "(sub").replace("</sub>", ")"), tmp_path / "b.wav")
    assert looked.exit_code == 0, looked.output
    assert longest_silence(tmp_path / "b.wav") < 1.0


def test_no_ssml_reads_a_speak_text_as_plain_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Plain text keeps every character: markup characters reach Bark as written, and no break is made.
    text = "<speak>Hello there.<break time='2s'/>Good night.</speak>"
    result = say(tiny_model_dir, text, tmp_path / "a.wav", "--no-ssml")
    assert result.exit_code == 0, result.output
    assert longest_silence(tmp_path / "a.wav") < 1.0


BAD = [
    # (text, lexicon file content or None, exit code, what the message must say)
    ("<speak><phoneme ph='x'>tomato</phoneme></speak>", None, 1, "<phoneme>"),
    ("<speak>Hi <break time='forever'/></speak>", None, 1, 'write a time like "1.5s"'),
    ("<speak>Hi <voice name='nobody'>there</voice></speak>", None, 1, '<voice name="nobody">'),
    ("<speak>unclosed", None, 1, "SSML"),
    ("Hi.", "{not json", 2, "is not a JSON lexicon"),
    ("Hi.", '["Nguyen", "win"]', 2, "a lexicon is a JSON object"),
    ("Hi.", '{"en": {"Nguyen": ""}}', 2, "must not be empty"),
    ("Hi.", '{"en": {"SQL": "sequel SQL"}}', 2, "must not contain a word of the lexicon"),
]


@pytest.mark.parametrize(("text", "lexicon", "code", "message"), BAD)
def test_bad_markup_and_lexicon_files_are_one_line_errors_and_write_nothing(
    tiny_model_dir: Path, tmp_path: Path, text: str, lexicon: str | None, code: int, message: str
) -> None:
    extra: list[str] = []
    if lexicon is not None:
        (tmp_path / "lex.json").write_text(lexicon, encoding="utf-8")
        extra = ["--lexicon", str(tmp_path / "lex.json")]
    result = say(tiny_model_dir, text, tmp_path / "x.wav", *extra)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    if lexicon is not None:
        assert "--lexicon" in result.output
    assert not (tmp_path / "x.wav").exists()


def test_plan_prints_the_servers_dry_run_and_generates_nothing(
    tiny_model_dir: Path, tmp_path: Path, make_app: Any
) -> None:
    lexicon = {"en": {"Nguyen": "win"}}
    (tmp_path / "names.json").write_text(json.dumps(lexicon), encoding="utf-8")
    text = '<speak>Nguyen is here.<break time="1500ms"/>It costs $5.</speak>'
    args = [
        "say",
        text,
        "--plan",
        "--seed",
        "3",
        "--voice",
        "v2/en_speaker_2",
        "--lexicon",
        str(tmp_path / "names.json"),
    ]
    result = CliRunner().invoke(main, [*args, "--model", str(tiny_model_dir), "--offline"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)  # the plan alone: progress bars go to stderr
    assert [c["said"] for c in plan["chunks"]] == ["win is here.", "It costs five US dollars."]
    assert plan["pauses"] == [{"after_chunk": 0, "seconds": 1.5}] and plan["ssml"] is True
    assert plan["substitutions"][0]["source"] == "lexicon:file"
    assert list(tmp_path.iterdir()) == [tmp_path / "names.json"]  # nothing written
    # The same answer as the server's dry run for the same request (the lexicon's layer named apart).
    body = {"model": "tts-1", "voice": "v2/en_speaker_2", "input": text, "seed": 3, "lexicon": lexicon}
    served = make_app().test_client().post("/v1/audio/speech/plan", json=body)
    assert served.status_code == 200, served.get_json()
    expected = served.get_json()
    for item in expected["substitutions"]:
        item["source"] = item["source"].replace("lexicon:request", "lexicon:file")
    assert plan == expected


def test_say_needs_an_output_unless_it_plans(tiny_model_dir: Path) -> None:
    result = CliRunner().invoke(main, ["say", "Hi.", "--model", str(tiny_model_dir), "--offline"])
    assert result.exit_code == 2 and "give -o/--output FILE (or --plan" in result.output
