"""Voices in a book: the book's, per-chapter overrides, inline [voice:NAME] tags; Bark's cues untouched."""

import pytest

from barkserve.books.model import Book, Chapter
from barkserve.books.voices import parse_chapter_voices, voice_book
from barkserve.errors import InvalidBook, InvalidRequest, InvalidVoice

KNOWN = {"v2/en_speaker_1", "v2/en_speaker_2", "v2/de_speaker_3", "narrator", "v2/en_speaker_6"}


def resolve(voice: object) -> str:
    """Like VoiceLibrary.resolve_name on a small set: numbers and short preset names resolve too."""
    name = f"v2/en_speaker_{voice}" if isinstance(voice, int) else str(voice)
    name = name if name in KNOWN or name.startswith("v2/") else f"v2/{name}"
    if name not in KNOWN and str(voice) not in KNOWN:
        raise InvalidVoice(f"unknown voice {voice!r}")
    return name if name in KNOWN else str(voice)


BOOK = Book(
    "T",
    chapters=(
        Chapter("One", "One\nShe said: [voice:de_speaker_3]Hallo! [laughs]\n[voice:narrator] MAN: ♪ la ♪ he sang."),
        Chapter("Two", "Two\nPlain text."),
    ),
)


def test_tags_switch_voices_and_cues_pass_intact() -> None:
    chapters = voice_book(BOOK, "v2/en_speaker_6", resolve, {2: "1"})
    first, second = chapters
    assert [(s.voice, s.text) for s in first.segments] == [
        ("v2/en_speaker_6", "One\nShe said: "),
        ("v2/de_speaker_3", "Hallo! [laughs]\n"),
        ("narrator", " MAN: ♪ la ♪ he sang."),
    ]
    assert [(s.voice, s.text) for s in second.segments] == [("v2/en_speaker_1", "Two\nPlain text.")]
    assert "[voice:" not in first.text and first.text.replace("\n", " ").count("[laughs]") == 1


def test_each_chapter_starts_in_its_own_voice_and_repeated_tags_merge() -> None:
    book = Book("T", chapters=(Chapter("A", "[voice:narrator]x"), Chapter("B", "y [voice:v2/en_speaker_6] z")))
    a, b = voice_book(book, "v2/en_speaker_6", resolve)
    assert [s.voice for s in a.segments] == ["narrator"]
    assert [(s.voice, s.text) for s in b.segments] == [("v2/en_speaker_6", "y  z")]  # the tag did not change voice


def test_unknown_voice_names_chapter_and_line() -> None:
    book = Book("T", chapters=(Chapter("A", "fine"), Chapter("The Storm", "a\nb\nc [voice:bob] d")))
    with pytest.raises(InvalidVoice) as caught:
        voice_book(book, "v2/en_speaker_6", resolve, numbers=[4, 7])
    assert caught.value.message.startswith(
        "chapter 7 ('The Storm'), line 3 of the chapter: [voice:bob]: unknown voice 'bob'"
    )


@pytest.mark.parametrize(
    ("chapters", "overrides", "error", "needle"),
    [
        ((Chapter("A", "[voice:] x"),), None, InvalidVoice, "names no voice"),
        ((Chapter("A", "[voice:narrator]  "),), None, InvalidBook, "nothing to read"),
        ((Chapter("A", "x"),), {1: "nobody"}, InvalidVoice, "chapter 1 ('A'), its chapter voice"),
    ],
)
def test_bad_voicing(chapters: tuple, overrides: object, error: type, needle: str) -> None:
    with pytest.raises(error) as caught:
        voice_book(Book("T", chapters=chapters), "v2/en_speaker_6", resolve, overrides)  # type: ignore[arg-type]
    assert needle in caught.value.message


def test_chapter_voice_forms() -> None:
    assert parse_chapter_voices(["2=v2/en_speaker_1", "3 = narrator"]) == {2: "v2/en_speaker_1", 3: "narrator"}
    assert parse_chapter_voices({"1": 4}) == {1: "4"}
    for bad in (["2"], {"0": "x"}, {"a": "x"}, {"1": ""}, {"1": True}, "2=x"):
        with pytest.raises(InvalidRequest):
            parse_chapter_voices(bad)
