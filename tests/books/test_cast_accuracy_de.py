"""German attribution by rules, measured on real text: the first 200 quotes of the German jokes that Debian's
fortunes-de ships (`witze`), labelled by hand (tests/books/cast_data/witze_de.fortunes.json; the text itself is
read from the package, not copied). Jokes name their speakers by role ("der Arzt", "der Patient"), put the
subject after the verb ("Da sagt die Frau:") and follow each other without a break, so the figure is far
below English novels'; it is kept here so that a change to the German rules shows in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from barkserve.books import read_book
from barkserve.books.cast_sheet import cast_book
from support import missing

WITZE = Path("/usr/share/games/fortunes/de/witze")  # Debian's fortunes-de (.ci/system-deps.sh installs it)
LABELS = Path(__file__).parent / "cast_data" / "witze_de.fortunes.json"
# Measured with the rules alone: right / labelled quotes (accuracy) and right / quotes given a speaker (precision).
MEASURED_ACCURACY = 0.144
MEASURED_PRECISION = 0.447
MARGIN = 0.03
# A speaker named by a role is right under that role with or without its article ("Der Arzt", "Ein Doktor").
ARTICLE = re.compile(r"^(?:der|die|das|ein|eine|einen|dem|den|herr|unser|sein|seine)\s+")


def role(name: str) -> str:
    name = name.lower().strip()
    while ARTICLE.match(name):
        name = ARTICLE.sub("", name, count=1)
    return name


def score() -> tuple[int, int, int]:
    """(labelled quotes, given a speaker by the rules, given the labelled speaker) of the first quotes."""
    if not WITZE.exists():
        missing("the German jokes of Debian's fortunes-de are not installed (apt-get install fortunes-de)")
    data = json.loads(LABELS.read_text(encoding="utf-8"))
    text = re.sub(r"(?m)^%$", "", WITZE.read_text(encoding="utf-8"))
    book = read_book(text.encode("utf-8"), "witze.txt")
    assert book.language == "de" and len(book.chapters) == 1
    quotes = cast_book(book).chapters[0][: data["quotes"]]
    assert len(quotes) == len(data["labels"]) == 200
    total = attributed = right = 0
    for quote, label in zip(quotes, data["labels"], strict=True):
        if label == "?":  # no speaker named or addressed, signs and rules quoted, quotes the source leaves open
            continue
        names = set(data["aliases"].get(label.lower(), [label.lower()]))
        total += 1
        attributed += quote.speaker is not None
        right += quote.speaker is not None and role(quote.speaker) in names
    return total, attributed, right


def test_german_rules_on_real_jokes_as_measured() -> None:
    total, attributed, right = score()
    print(f"witze: {total} quotes labelled, {attributed} given a speaker, {right} right")
    assert total == 146
    assert right / total >= MEASURED_ACCURACY - MARGIN
    assert right / attributed >= MEASURED_PRECISION - MARGIN
