"""The SSML subset, element by element: what is shown, what Bark is given, runs, pauses and the 400s."""

from __future__ import annotations

import pytest

from barkserve.errors import InvalidRequest, InvalidVoice
from barkserve.markup import Pronouncer, plan_chunks, read_script
from barkserve.markup.script import MAX_PAUSE_SEC, Script
from barkserve.markup.ssml import MAX_DEPTH, parse_ssml
from barkserve.voices import language_of

VOICES = ("v2/en_speaker_6", "v2/de_speaker_1", "v2/fr_speaker_2")


def resolve(name: str) -> str:
    """Like a voice library: a preset name, or 'en_speaker_N' without the prefix; anything else is no voice."""
    full = name if name.startswith("v2/") else f"v2/{name}"
    if full not in VOICES:
        raise InvalidVoice(f"unknown voice {name!r}")
    return full


def language(name: str | None) -> str:
    return language_of(name or VOICES[0]) or "en"


def script(ssml: str) -> Script:
    return parse_ssml(ssml, resolve, language)


def said(ssml: str, normalize: bool = False) -> list[str]:
    """What Bark is given, chunk by chunk."""
    planned = plan_chunks(script(ssml), Pronouncer(None, normalize), language, len)
    return [c.said for c in planned.chunks]


def chunks(ssml: str) -> list:  # type: ignore[type-arg]
    return plan_chunks(script(ssml), Pronouncer(None, False), language, len).chunks


def test_text_outside_markup_is_spoken_as_sent() -> None:
    found = script("<speak>Hello there, <emphasis level='strong'>big</emphasis> world. [laughs] ♪ la la ♪</speak>")
    assert found.shown == "Hello there, big world. [laughs] ♪ la la ♪"
    assert " ".join(said("<speak>Hello there, <emphasis>big</emphasis> world. [laughs]</speak>")) == (
        "Hello there, big world. [laughs]"
    )


@pytest.mark.parametrize(
    ("markup", "seconds"),
    [
        ('<break time="1.5s"/>', 1.5),
        ('<break time="300ms"/>', 0.3),
        ('<break strength="x-strong"/>', 2.0),
        ('<break strength="weak"/>', 0.25),
        ('<break strength="none"/>', 0.0),
        ("<break/>", 0.5),
    ],
)
def test_break_is_a_pause_between_the_words_around_it(markup: str, seconds: float) -> None:
    found = chunks(f"<speak>One two {markup} three four</speak>")
    assert [c.said for c in found] == ["One two", "three four"]
    assert found[0].pause == pytest.approx(seconds)
    assert found[1].pause is None


def test_breaks_in_a_row_add_up_and_a_leading_break_is_lead_in_silence() -> None:
    found = chunks('<speak><break time="1s"/>A. <break time="2s"/><break time="500ms"/>B.<break time="1s"/></speak>')
    assert [c.said for c in found] == ["A.", "B."]
    assert found[0].lead == pytest.approx(1.0)
    assert found[0].pause == pytest.approx(2.5)
    assert found[1].pause == pytest.approx(1.0)  # a pause after the last words is kept


def test_paragraphs_and_sentences_cut_runs_and_keep_words_apart() -> None:
    found = script("<speak><p><s>First one.</s><s>Second one.</s></p><p>Next paragraph.</p></speak>")
    assert found.shown == "First one. Second one. Next paragraph."
    planned = plan_chunks(found, Pronouncer(None, False), language, len)
    assert [c.said for c in planned.chunks] == ["First one.", "Second one.", "Next paragraph."]
    assert planned.chunks[1].pause == pytest.approx(0.5)  # the end of a paragraph
    assert planned.chunks[0].pause is None  # the end of a sentence: the usual pause


def test_voice_switches_voice_for_its_words_only() -> None:
    found = chunks("<speak>Hello. <voice name='de_speaker_1'>Guten Tag.</voice> Bye.</speak>")
    assert [(c.said, c.voice) for c in found] == [("Hello.", None), ("Guten Tag.", "v2/de_speaker_1"), ("Bye.", None)]


def test_say_as_in_a_voice_speaks_that_voices_language() -> None:
    found = said('<speak><voice name="v2/de_speaker_1"><say-as interpret-as="cardinal">21</say-as></voice></speak>')
    assert found == ["einundzwanzig"]


@pytest.mark.parametrize(
    ("rate", "speed"), [("slow", 0.75), ("x-fast", 1.5), ("150%", 1.5), ("0.5", 0.5), ("medium", 1.0)]
)
def test_prosody_rate_is_the_speed_of_its_words(rate: str, speed: float) -> None:
    found = chunks(f'<speak>Normal. <prosody rate="{rate}">Changed.</prosody> Normal.</speak>')
    assert [(c.said, c.speed) for c in found] == [("Normal.", None), ("Changed.", speed), ("Normal.", None)]


def test_sub_shows_its_text_and_says_its_alias() -> None:
    found = script('<speak>The <sub alias="World Wide Web">WWW</sub> is big.</speak>')
    assert found.shown == "The WWW is big."
    assert said('<speak>The <sub alias="World Wide Web">WWW</sub> is big.</speak>') == ["The World Wide Web is big."]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("characters", "ABC", "A B C"),
        ("characters", "R2", "R two"),
        ("cardinal", "1,234", "one thousand, two hundred and thirty-four"),
        ("ordinal", "3", "third"),
        ("digits", "2024", "two zero two four"),
        ("date", "2024-03-05", "March fifth, twenty twenty-four"),
        ("telephone", "555-0123", "five five five, zero one two three"),
    ],
)
def test_say_as_spells_its_text(kind: str, text: str, expected: str) -> None:
    assert said(f'<speak>Say <say-as interpret-as="{kind}">{text}</say-as> now</speak>') == [f"Say {expected} now"]


def test_say_as_date_reads_the_stated_order() -> None:
    ssml = '<speak><say-as interpret-as="date" format="dmy">05/03/2024</say-as></speak>'
    assert said(ssml) == ["March fifth, twenty twenty-four"]


@pytest.mark.parametrize(
    ("ssml", "needle"),
    [
        ("<speak><phoneme alphabet='ipa' ph='tə'>to</phoneme></speak>", "<phoneme> is not supported"),
        ("<speak><audio src='x.wav'/>Hi</speak>", "<audio> is not supported"),
        ("<speak>Hi <speak>again</speak></speak>", "<speak> is the root of SSML only"),
        ("<p>Hi</p>", "root element must be <speak>"),
        ("<speak>Hi <b>there</speak>", "not well-formed XML"),
        ("<speak>Tom & Jerry</speak>", "not well-formed XML"),
        ("<speak><voice name='nobody'>Hi</voice></speak>", '<voice name="nobody">'),
        ("<speak><voice>Hi</voice></speak>", "<voice> needs a name"),
        ("<speak>Hi <break time='20s'/></speak>", f"at most {MAX_PAUSE_SEC:g} s"),
        ("<speak>Hi <break time='soon'/></speak>", '<break time="soon">'),
        ("<speak>Hi <break strength='huge'/></speak>", '<break strength="huge">'),
        ("<speak><prosody pitch='high'>Hi</prosody></speak>", "<prosody pitch> is not supported"),
        ("<speak><prosody rate='9'>Hi</prosody></speak>", '<prosody rate="9">'),
        ("<speak><sub>WWW</sub></speak>", "<sub> needs an alias"),
        ("<speak><say-as interpret-as='verbatim'>x</say-as></speak>", 'interpret-as="verbatim"'),
        ("<speak><say-as interpret-as='cardinal'>many</say-as></speak>", "whole number"),
        ("<speak><say-as interpret-as='date'>2024-02-30</say-as></speak>", "not a date"),
        ("<speak><break time='1s'/></speak>", "no text to speak"),
        ("<speak>Hi [pause:oops]</speak>", "is not a pause"),
    ],
)
def test_bad_ssml_is_a_400_naming_the_element(ssml: str, needle: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan_chunks(script(ssml), Pronouncer(None, False), language, len)
    assert needle in caught.value.message


@pytest.mark.parametrize(
    "ssml",
    [
        # Entity expansion ("billion laughs"), an external entity, and a DTD: all refused, nothing read.
        '<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]><speak>&b;</speak>',
        '<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]><speak>&x;</speak>',
        '<?xml version="1.0"?><!DOCTYPE speak SYSTEM "http://example.com/speak.dtd"><speak>Hi</speak>',
    ],
)
def test_entities_and_dtds_are_refused(ssml: str) -> None:
    with pytest.raises(InvalidRequest, match="DTD, entities or external references"):
        script(ssml)


def test_depth_is_bounded() -> None:
    deep = "<speak>" + "<emphasis>" * (MAX_DEPTH + 1) + "x" + "</emphasis>" * (MAX_DEPTH + 1) + "</speak>"
    with pytest.raises(InvalidRequest, match="nested at most"):
        script(deep)
    fine = "<speak>" + "<emphasis>" * (MAX_DEPTH - 1) + "x" + "</emphasis>" * (MAX_DEPTH - 1) + "</speak>"
    assert script(fine).shown == "x"


def test_ssml_is_read_by_its_look_or_by_the_flag() -> None:
    assert read_script("<speak>A <break/> B</speak>", None, resolve, language).ssml
    assert read_script("A <break/> B", True, resolve, language).shown == "A B"
    plain = read_script("<speak>A</speak>", False, resolve, language)  # ssml: false speaks the tags as text
    assert not plain.ssml and plain.shown == "<speak>A</speak>"
    assert not read_script("I <3 tags", None, resolve, language).ssml
