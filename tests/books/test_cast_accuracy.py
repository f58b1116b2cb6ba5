"""Attribution by rules measured on hand-labelled dialogue (tests/books/cast_data/README.md): the accuracy that
docs/audiobooks.md reports, kept within a small margin, so a change that breaks attribution fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from barkserve.books import read_book
from barkserve.books.cast import attribute
from barkserve.books.cast_sheet import cast_book
from barkserve.books.quotes import find_quotes

DATA = Path(__file__).parent / "cast_data"
SETS = sorted(DATA.glob("*.labels.json"))
# Measured with the rules alone (docs/audiobooks.md, "Full cast"); the test allows MARGIN below it.
MEASURED = {"pride_and_prejudice_1-9": 0.498, "entre_nous_1906": 0.236, "monte_cristo_1": 0.157}
MARGIN = 0.03


def score(labels_path: Path) -> tuple[int, int, int]:
    """(labelled quotes, attributed by the rules, attributed to the labelled speaker) of one set."""
    data = json.loads(labels_path.read_text(encoding="utf-8"))
    text_path = DATA / data["source"].rsplit(": ", 1)[1]
    book = read_book(text_path.read_bytes(), text_path.name)
    cast = cast_book(book)
    same = {name: {name, *data["aliases"].get(name, [])} for name in data["names"].values()}
    total = attributed = right = 0
    for number, labels in data["chapters"].items():
        quotes = cast.chapters[int(number)]
        assert len(quotes) == len(labels), f"chapter {number}: {len(quotes)} quotes found, {len(labels)} labelled"
        for quote, code in zip(quotes, labels, strict=True):
            if code == "?":  # letters and songs read aloud, lines of several speakers at once: not labelled
                continue
            total += 1
            attributed += quote.speaker is not None
            right += quote.speaker in same[data["names"][code]]
    return total, attributed, right


@pytest.mark.parametrize("labels", SETS, ids=[p.name.removesuffix(".labels.json") for p in SETS])
def test_rules_attribute_hand_labelled_dialogue_as_measured(labels: Path) -> None:
    total, attributed, right = score(labels)
    accuracy = right / total
    print(f"{labels.name}: {total} quotes, {attributed} attributed, {right} right: accuracy {accuracy:.3f}")
    assert accuracy >= MEASURED[labels.name.removesuffix(".labels.json")] - MARGIN


def test_the_labelled_sets_are_large_enough() -> None:
    assert sum(score(p)[0] for p in SETS) >= 300


# The French rules that the French set's figure rests on, one example each (a Project Gutenberg text).
GUTENBERG_FR = """Jean entra.

«Bonjour, dit Marie, tu viens?

--Oui, répond Jean.

--Tiens, dit-elle, assieds-toi.»"""


def test_french_gutenberg_dialogue_lines_and_tags_inside_the_quote() -> None:
    quotes = attribute(GUTENBERG_FR, find_quotes(GUTENBERG_FR, "fr"), "fr")
    assert [(GUTENBERG_FR[q.start : q.end], q.speaker) for q in quotes] == [
        ("«Bonjour, dit Marie, tu viens?", "Marie"),  # the tag inside the quote
        ("--Oui, répond Jean.", "Jean"),  # "--" opens a line; a present-tense verb
        ("--Tiens, dit-elle, assieds-toi.»", "Marie"),  # the inverted pronoun
    ]
