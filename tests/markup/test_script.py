"""Pause tags in plain text, and properties of any markup: never a 500, text outside markup said as sent."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barkserve.errors import InvalidRequest
from barkserve.markup import MAX_PAUSE_SEC, MAX_TOTAL_PAUSE_SEC, Pronouncer, plain_script, plan_chunks
from barkserve.synthesizer import Synthesizer
from barkserve.text import normalize_text
from support import FakeEngine, server_config


def planned(text: str) -> Any:
    return plan_chunks(plain_script(text), Pronouncer(None, False), lambda _: "en", len)


def test_plain_text_is_one_run_said_as_written() -> None:
    found = planned("Hello there. [laughs] How are you?")
    assert [c.said for c in found.chunks] == ["Hello there. [laughs] How are you?"]
    assert all(c.say is None for c in found.chunks)


@pytest.mark.parametrize(
    ("tag", "seconds"), [("[pause]", 0.5), ("[pause:1.5s]", 1.5), ("[PAUSE:300ms]", 0.3), ("[pause: 2 s]", 2.0)]
)
def test_a_pause_tag_cuts_the_text_and_is_not_said(tag: str, seconds: float) -> None:
    found = planned(f"Before it {tag} after it.")
    assert [c.said for c in found.chunks] == ["Before it", "after it."]
    assert found.chunks[0].pause == pytest.approx(seconds)
    assert found.chunks[0].text.endswith(tag)  # the chunks still cover the text: captions cut it the same way


def test_pauses_before_after_and_in_a_row() -> None:
    text = "[pause:1s] One. [pause:1s][pause:2s] Two. [pause:3s]"
    found = planned(text)
    assert [c.said for c in found.chunks] == ["One.", "Two."]
    assert found.chunks[0].lead == pytest.approx(1.0)
    assert found.chunks[0].pause == pytest.approx(3.0)
    assert found.chunks[1].pause == pytest.approx(3.0)
    assert "".join(c.text for c in found.chunks) == normalize_text(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (f"A [pause:{MAX_PAUSE_SEC + 1:g}s] B", f"at most {MAX_PAUSE_SEC:g} s"),
        ("A [pause:soon] B", "is not a pause"),
        ("A [pause:1h] B", "is not a pause"),
        ("A " + "[pause:10s] " * int(MAX_TOTAL_PAUSE_SEC / 10 + 1) + "B", "add up to at most"),
        ("[pause] [pause:2s]", "nothing to speak besides its markup"),
    ],
)
def test_bad_pauses_are_a_400(text: str, needle: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        planned(text)
    assert needle in caught.value.message


@pytest.fixture(scope="module")
def synth(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The synthesizer on the tiny checkpoint's tokenizer and voices; its engine makes no audio."""
    config = server_config(tiny_model_dir, tmp_path_factory.mktemp("markup"))
    with Synthesizer(config, engine_factory=FakeEngine) as found:
        yield found


PLAIN = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=PLAIN)
def test_plain_text_without_markup_is_said_as_sent(synth: Any, text: str) -> None:
    try:
        plan = synth.plan(text, options={"normalize": False, "ssml": False})
    except InvalidRequest:
        return  # nothing to speak, a bad pause tag, or a piece too long: a 400, never a 500
    chunks = plan.info.chunks
    assert "".join(c.text for c in chunks) == normalize_text(text)
    if "[pause" not in text.lower():
        assert [c.said for c in chunks] == [c.spoken for c in chunks]


WORD = st.text(st.sampled_from("abcdefgh XYZ.,!?'"), min_size=1, max_size=20)


def element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    wrappers = st.sampled_from(
        ["p", "s", "emphasis", "voice name='v2/de_speaker_1'", "prosody rate='slow'", "prosody rate='120%'"]
    )
    return st.tuples(wrappers, st.lists(children, max_size=3)).map(
        lambda pair: f"<{pair[0]}>{''.join(pair[1])}</{pair[0].split()[0]}>"
    )


BREAK = st.sampled_from(["<break/>", "<break time='1s'/>", "<break strength='weak'/>", "[pause:0.2s]"])
CONTENT = st.recursive(WORD.map(escape) | BREAK, element, max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(CONTENT, min_size=1, max_size=5))
def test_ssml_words_are_said_as_sent(synth: Any, parts: list[str]) -> None:
    ssml = f"<speak>{''.join(parts)}</speak>"
    try:
        plan = synth.plan(ssml, options={"normalize": False})
    except InvalidRequest as exc:
        assert "nothing to speak" in exc.message or "no text to speak" in exc.message, exc.message
        return
    said = " ".join(" ".join(c.said for c in plan.info.chunks).split())
    shown = " ".join(plain_words(plan.info.caption_text).split())
    assert said == shown


def plain_words(text: str) -> str:
    import re

    return re.sub(r"\[pause[^\]]*\]", " ", text, flags=re.IGNORECASE)


PIECES = [
    "<speak>", "</speak>", "<p>", "</p>", "<break time='", "'/>", "<voice name=", quoteattr("x"), ">",
    "<say-as interpret-as='date'>", "</say-as>", "<sub alias='", "&amp;", "&", "<!DOCTYPE x>", "[pause",
    ":1s]", "]", "12", "3rd", "$", "Hello", " ", "<phoneme>", "<!--", "-->", "<?xml version='1.0'?>",
]  # fmt: skip
ANY_MARKUP = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(PIECES), max_size=20).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_MARKUP, ssml=st.sampled_from([None, True, False]), lexicon=st.sampled_from([None, {"Hello": "Hi"}]))
def test_any_markup_is_planned_or_refused_with_a_400(synth: Any, text: str, ssml: Any, lexicon: Any) -> None:
    with contextlib.suppress(InvalidRequest):  # a 400 is fine; any other error would be a 500
        synth.plan(text, options={"ssml": ssml, "lexicon": lexicon})


def test_barks_cues_are_never_respelled_or_normalized() -> None:
    from barkserve.markup import Lexicon

    pronouncer = Pronouncer(Lexicon.from_value({"laughs": "chuckles", "la": "lah"}), True)
    said, found = pronouncer.say("[laughs] He laughs 3 times. ♪ la la ♪ la", "en")
    assert said == "[laughs] He chuckles three times. ♪ la la ♪ lah"
    assert [s.original for s in found] == ["laughs", "3", "la"]
