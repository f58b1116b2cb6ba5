"""Pronunciation lexicons: whole words, case rules, languages, layers, and bad entries named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkserve.errors import InvalidRequest
from barkserve.markup.lexicon import MAX_ENTRIES, MAX_SAID_CHARS, MAX_WORD_CHARS, Lexicon


def lexicon(value: object, source: str = "request") -> Lexicon:
    found = Lexicon.from_value(value, source)
    assert found is not None
    return found


def say(value: object, text: str, language: str = "en") -> str:
    return lexicon(value).apply(text, language)[0]


def test_whole_words_only() -> None:
    assert say({"cat": "kat"}, "cat category bobcat cat.") == "kat category bobcat kat."


def test_lower_case_words_match_any_case_and_capitals_match_as_written() -> None:
    assert say({"nasa": "nassa"}, "NASA Nasa nasa") == "nassa nassa nassa"
    assert say({"US": "you ess"}, "the US and us") == "the you ess and us"


def test_words_with_spaces_and_punctuation() -> None:
    assert say({"Dr. No": "Doctor No", "C++": "C plus plus"}, "Dr.  No likes C++.") == "Doctor No likes C plus plus."


def test_longest_word_first() -> None:
    assert say({"New York": "NY", "New York City": "big apple"}, "New York City, New York") == "big apple, NY"


def test_per_language_entries_and_star() -> None:
    value = {"en": {"Paris": "Pariss"}, "fr": {"Paris": "Parii"}, "*": {"barkserve": "bark serve"}}
    assert say(value, "Paris barkserve", "en") == "Pariss bark serve"
    assert say(value, "Paris barkserve", "fr") == "Parii bark serve"
    assert say(value, "Paris barkserve", "de") == "Paris bark serve"


def test_a_later_layer_replaces_an_earlier_entry() -> None:
    server = lexicon({"en": {"Nguyen": "noo-yen", "SQL": "S Q L"}}, "server")
    request = lexicon({"en": {"Nguyen": "win"}})
    merged = server.merged(request)
    text, found = merged.apply("Nguyen likes SQL", "en")
    assert text == "win likes S Q L"
    assert [(s.original, s.said, s.source) for s in found] == [
        ("Nguyen", "win", "lexicon:request"),
        ("SQL", "S Q L", "lexicon:server"),
    ]


def test_the_json_form_round_trips() -> None:
    value = {"en": {"Nguyen": "win"}, "*": {"gif": "jif"}}
    assert lexicon(lexicon(value).to_json()).to_json() == value


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ({"en": {"": "x"}}, "must not be empty"),
        ({"en": {"word": "  "}}, "must not be empty"),
        ({"en": {"w" * (MAX_WORD_CHARS + 1): "x"}}, f"at most {MAX_WORD_CHARS}"),
        ({"en": {"word": "x" * (MAX_SAID_CHARS + 1)}}, f"at most {MAX_SAID_CHARS}"),
        ({"en": {"Nguyen": "win Nguyen"}}, "contains the word 'Nguyen'"),
        ({"en": {"a1": "b1", "b1": "c1"}}, "contains the word 'b1'"),
        ({"*": {"gif": "jif"}, "en": {"jif": "gif"}}, "contains the word"),
        ({"en": {"laugh": "[laughs]"}}, "not allowed in a lexicon"),
        ({"en": {"word": "<break/>"}}, "not allowed in a lexicon"),
        ({"english": {"word": "x"}}, "codes like 'en'"),
        ({"en": "x", "de": {"a": "b"}}, "do not mix"),
        ({"en": {"word": 3}}, "strings"),
        ({"en": {"...": "dots"}}, "at least one letter or digit"),
        (["word", "x"], "JSON object"),
        ({"*": {f"w{i}": "x" for i in range(MAX_ENTRIES + 1)}}, f"at most {MAX_ENTRIES} entries"),
    ],
)
def test_bad_entries_are_a_400_naming_the_entry(value: object, needle: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Lexicon.from_value(value)
    assert needle in caught.value.message


def test_a_loop_through_two_layers_is_refused() -> None:
    server = lexicon({"en": {"SQL": "sequel"}}, "server")
    with pytest.raises(InvalidRequest, match="'sequel' of entry en:'sequel' \\(lexicon:key\\)"):
        server.merged(lexicon({"en": {"sequel": "SQL"}}, "key"))


WORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(WORDS, WORDS, max_size=6), st.text(max_size=80))
def test_any_lexicon_is_read_or_refused_with_a_400_and_text_without_its_words_is_unchanged(
    value: dict[str, str], text: str
) -> None:
    try:
        found = Lexicon.from_value(value)
    except InvalidRequest:
        return
    assert found is not None
    out, subs = found.apply(text, "en")
    if not subs:
        assert out == text  # text outside the lexicon's words is said as sent
    for sub in subs:
        assert sub.said in out
