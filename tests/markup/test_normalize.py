"""Text normalization in several languages: numbers, ordinals, dates, times, currencies, abbreviations."""

from __future__ import annotations

import pytest

from barkserve.markup.normalize import normalize


@pytest.mark.parametrize(
    ("language", "text", "said"),
    [
        ("en", "I have 3 cats.", "I have three cats."),
        ("en", "1,234 people", "one thousand, two hundred and thirty-four people"),
        ("en", "pi is 3.14", "pi is three point one four"),
        ("en", "It is -5 outside", "It is minus five outside"),
        ("en", "the 21st time", "the twenty-first time"),
        ("en", "in 1990", "in nineteen ninety"),
        ("en", "on 2024-03-05", "on March fifth, twenty twenty-four"),
        ("en", "at 2:05 pm", "at two oh five p m"),
        ("en", "at 14:30", "at fourteen thirty"),
        ("en", "for $12.50", "for twelve dollars, fifty cents"),
        ("en", "for €3", "for three euros"),
        ("en", "Dr. Smith, e.g. now", "Doctor Smith, for example now"),
        ("de", "Ich habe 3 Katzen.", "Ich habe drei Katzen."),
        ("de", "1.234,5 Meter", "eintausendzweihundertvierunddreißig Komma fünf Meter"),
        ("de", "am 2024-03-05", "am fünfte März zweitausendvierundzwanzig"),
        ("de", "um 14:30", "um vierzehn dreißig"),
        ("de", "für 12,50 €", "für zwölf Euro und fünfzig Cent"),
        ("de", "z.B. heute", "zum Beispiel heute"),
        ("fr", "J'ai 3 chats.", "J'ai trois chats."),
        ("fr", "le 2e jour", "le deuxième jour"),
        ("fr", "3,5 €", "trois euros et cinquante centimes"),
        ("fr", "M. Dupont", "Monsieur Dupont"),
        ("es", "Tengo 22 gatos.", "Tengo veintidós gatos."),
        ("es", "el 1º de mayo", "el primero de mayo"),
        ("es", "Sr. García", "Señor García"),
    ],
)
def test_spelled_out_in_the_language(language: str, text: str, said: str) -> None:
    assert normalize(text, language)[0] == said


def test_each_replacement_is_reported() -> None:
    said, found = normalize("Dr. Who paid $5 on 2024-03-05 at 9:15.", "en")
    assert [(s.original, s.source) for s in found] == [
        ("Dr.", "normalize:abbreviation"),
        ("$5", "normalize:currency"),
        ("2024-03-05", "normalize:date"),
        ("9:15", "normalize:time"),
    ]
    assert all(s.said in said for s in found)


@pytest.mark.parametrize(
    "text",
    [
        "R2D2 plays mp3 files in 4K",  # digits inside words stay
        "version 1.2.3",  # not one number
        "call 12345678901234567890",  # too long to be read as a number
    ],
)
def test_digits_in_words_and_very_long_numbers_stay(text: str) -> None:
    said, _ = normalize(text, "en")
    for kept in ("R2D2", "mp3", "4K", "12345678901234567890"):
        if kept in text:
            assert kept in said


def test_ranges_keep_their_numbers_apart() -> None:
    assert normalize("1990-1995", "en")[0] == "nineteen ninety - nineteen ninety-five"


def test_languages_num2words_cannot_spell_keep_their_digits() -> None:
    assert normalize("我有 3 个", "zh") == ("我有 3 个", [])
    assert normalize("मेरे पास 3 हैं", "hi") == ("मेरे पास 3 हैं", [])
