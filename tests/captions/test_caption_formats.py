"""SRT, WebVTT and JSON captions, read back with the `srt` and `webvtt-py` packages."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import pytest
import srt
import webvtt

from barkserve.captions import (
    CAPTION_FORMATS,
    Cue,
    Word,
    check_format,
    from_json,
    to_json,
    to_srt,
    to_vtt,
    write_captions,
)
from barkserve.errors import InvalidRequest

CUES = [
    Cue(0.0, 1.5, "Hello there, <friend> & co."),
    Cue(1.5, 3.25, "Café\u0301 au lait?"),
    Cue(3.25, 3723.0406, "Une heure plus tard."),
]
WORDS = [
    Cue(0.0, 1.5, "Hello there.", (Word(0.1, 0.6, "Hello"), Word(0.7, 1.4, "there."))),
    Cue(1.5, 3.0, "A -> b", (Word(1.5, 2.0, "A"), Word(2.1, 2.5, "->"), Word(2.6, 3.0, "b"))),
]


def vtt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_srt_round_trips_through_the_srt_package() -> None:
    parsed = list(srt.parse(to_srt(CUES)))
    assert [s.content for s in parsed] == [c.text for c in CUES]
    assert [s.index for s in parsed] == [1, 2, 3]
    assert [(s.start.total_seconds(), s.end.total_seconds()) for s in parsed] == [
        (0.0, 1.5),
        (1.5, 3.25),
        (3.25, 3723.041),  # milliseconds, rounded
    ]


def test_vtt_round_trips_through_webvtt_py() -> None:
    parsed = webvtt.from_string(to_vtt(CUES))
    # WebVTT escapes &, < and > in cue text; webvtt-py gives the escaped text back.
    assert [html.unescape(c.text) for c in parsed] == [c.text for c in CUES]
    assert [(vtt_seconds(c.start), vtt_seconds(c.end)) for c in parsed] == [(0.0, 1.5), (1.5, 3.25), (3.25, 3723.041)]
    assert "&lt;friend&gt; &amp; co." in to_vtt(CUES)


def test_json_round_trips_and_has_its_documented_shape() -> None:
    data = json.loads(to_json(WORDS))
    assert data["format"] == "barkserve.captions" and data["version"] == 1
    assert data["cues"][0] == {
        "start": 0.0,
        "end": 1.5,
        "text": "Hello there.",
        "words": [{"start": 0.1, "end": 0.6, "text": "Hello"}, {"start": 0.7, "end": 1.4, "text": "there."}],
    }
    assert from_json(to_json(WORDS)) == WORDS
    assert json.loads(to_json(CUES))["cues"][1]["words"] == []


def test_word_times_give_one_srt_subtitle_per_word() -> None:
    parsed = list(srt.parse(to_srt(WORDS)))
    assert [s.content for s in parsed] == ["Hello", "there.", "A", "->", "b"]
    assert [s.start.total_seconds() for s in parsed] == [0.1, 0.7, 1.5, 2.1, 2.6]


def test_cues_left_without_word_times_stay_whole_in_srt() -> None:
    mixed = [WORDS[0], Cue(1.5, 3.0, "Not aligned here.")]  # alignment fell back for the second
    parsed = list(srt.parse(to_srt(mixed)))
    assert [s.content for s in parsed] == ["Hello", "there.", "Not aligned here."]
    assert [(s.start.total_seconds(), s.end.total_seconds()) for s in parsed][-1] == (1.5, 3.0)


def test_word_times_ride_in_vtt_cues_as_timestamp_tags() -> None:
    text = to_vtt(WORDS)
    parsed = webvtt.from_string(text)
    assert [html.unescape(c.text) for c in parsed] == ["Hello there.", "A -> b"]  # tags are not text
    assert "Hello <00:00:00.700>there." in text
    assert "A <00:00:02.100>-&gt; <00:00:02.600>b" in text


@pytest.mark.parametrize("fmt", CAPTION_FORMATS)
def test_write_captions_writes_the_whole_file_and_nothing_else(tmp_path: Path, fmt: str) -> None:
    path = write_captions(CUES, tmp_path / f"speech.{fmt}", fmt)
    assert [p.name for p in tmp_path.iterdir()] == [f"speech.{fmt}"]  # no temporary file left
    text = path.read_text(encoding="utf-8")
    readers = {
        "srt": lambda t: [s.content for s in srt.parse(t)],
        "vtt": lambda t: [html.unescape(c.text) for c in webvtt.from_buffer(io.StringIO(t))],
        "json": lambda t: [c.text for c in from_json(t)],
    }
    assert readers[fmt](text) == [c.text for c in CUES]


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        write_captions(CUES, tmp_path / "speech.txt", "txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["SRT", "ass", "", None, 3, "none"])
def test_unknown_formats_are_refused_with_the_list(value: object) -> None:
    with pytest.raises(InvalidRequest, match=r"\['srt', 'vtt', 'json'\]"):
        check_format(value)
