"""Text preparation: normalization, sentence splitting and chunk packing across languages."""

import re
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkserve import text as text_module
from barkserve.errors import InvalidRequest
from barkserve.text import (
    CUE,
    MAX_CHUNK_SEC,
    _greedy,
    check_text,
    chunk_text,
    estimate_seconds,
    normalize_text,
    split_sentences,
)

SAMPLES = {
    "en": "Hello Mr. Smith. [laughs] How are you... fine! WOMAN: I said — twice — no. ♪ la la. la ♪ The end.",
    "de": "Das ist z. B. gut. Herr Dr. Müller kommt um 3 Uhr. Ja! Wirklich? [sighs] Nun gut.",
    "zh": "你好。我是一只狗！你呢？今天天气很好，我们去公园吧。[laughs] 好的。",
    "ja": "こんにちは。元気ですか？はい、元気です！今日は、とても良い天気ですね。",
}


def test_joiners_stay_and_invisible_format_characters_go() -> None:
    persian = "می\u200cخواهم"  # ZWNJ inside the word: removing or spacing it changes the word
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji made of three joined ones
    assert normalize_text(persian) == persian and normalize_text(family) == family
    assert normalize_text("bark\u00adserve \ufeffhi\u200b there\u202e") == "barkserve hi there"
    assert normalize_text("a\x00b\u2028c") == "a b c"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "empty"), ("\u200b\ufeff\u202e", "empty after"), ("\u200c\u200d ", "empty after"),
     ("hi \ud800", "U+D800"), (7, "string"), ("a" * 11, "at most 10 (setting max_x)")],
)  # fmt: skip
def test_check_text_refuses_what_cannot_be_spoken(text: object, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(needle)):
        check_text(text, 10, "max_x")
    assert check_text("\u200bhi", 10, "max_x") == "\u200bhi"  # the caller's text comes back unchanged


def test_normalize() -> None:
    assert normalize_text("  a\tb\n\nc\x00d\u200b e  ") == "a b c d e"
    assert normalize_text("Cafe\u0301") == "Café"  # NFC


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_sentences_keep_every_character(language: str) -> None:
    text = normalize_text(SAMPLES[language])
    sentences = split_sentences(text)
    assert "".join(sentences) == text and len(sentences) >= 3


@pytest.mark.parametrize(
    ("language", "expected"), [("zh", "你好。"), ("ja", "こんにちは。"), ("de", "Das ist z. B. gut. ")]
)
def test_first_sentence(language: str, expected: str) -> None:
    assert split_sentences(normalize_text(SAMPLES[language]), language)[0] == expected


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_chunks_join_back_and_fit(language: str) -> None:
    text = normalize_text(" ".join([SAMPLES[language]] * 12))
    chunks = chunk_text(text, count_tokens=len, max_tokens=120)
    assert "".join(c.text for c in chunks) == text
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk.spoken) <= 120 and estimate_seconds(chunk.spoken) <= MAX_CHUNK_SEC
        assert text[chunk.start : chunk.end] == chunk.text


def test_cues_are_never_cut() -> None:
    text = normalize_text(" ".join([SAMPLES["en"]] * 20))
    cues = [m.group() for m in CUE.finditer(text)]
    chunks = chunk_text(text, count_tokens=len, max_tokens=60)
    inside = [m.group() for c in chunks for m in CUE.finditer(c.text)]
    assert inside == cues and len(cues) == 40


def test_a_sentence_too_long_is_split_at_clauses_then_words() -> None:
    clauses = ", ".join(["this clause has some words"] * 30) + "."
    chunks = chunk_text(clauses, count_tokens=len, max_tokens=100)
    assert "".join(c.text for c in chunks) == clauses
    assert all(c.text.endswith(", ") for c in chunks[:-1])
    words = " ".join(["word"] * 200)
    chunks = chunk_text(words, count_tokens=len, max_tokens=50)
    assert all(len(c.spoken) <= 50 and not c.text.startswith(" ") for c in chunks)
    cjk = "我" * 400  # no punctuation, no spaces: split between characters
    chunks = chunk_text(cjk, count_tokens=len, max_tokens=256)
    assert "".join(c.text for c in chunks) == cjk and all(estimate_seconds(c.text) <= MAX_CHUNK_SEC for c in chunks)


alphabet = st.sampled_from(list("abc XYZ.!?,;:—…[]♪'\"你好。！？、ーカ\n\t"))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=alphabet, max_size=600), st.integers(min_value=8, max_value=80))
def test_property_chunks_are_the_normalized_text(raw: str, max_tokens: int) -> None:
    text = normalize_text(raw)
    chunks = chunk_text(text, count_tokens=len, max_tokens=max_tokens)
    assert "".join(c.text for c in chunks) == text
    positions = [(c.start, c.end) for c in chunks]
    assert positions == sorted(positions) and all(a < b for a, b in positions)
    for chunk in chunks:
        fits = len(chunk.spoken) <= max_tokens
        assert fits or any(len(m.group()) > max_tokens // 2 for m in CUE.finditer(chunk.text)) or len(chunk.spoken) == 0


def test_a_streams_first_chunk_is_its_first_sentence_or_clauses() -> None:
    text = "Hi. " + SAMPLES["en"] * 3
    chunks = chunk_text(text, first_seconds=3.0)
    assert chunks[0].text.strip() == "Hi." and "".join(c.text for c in chunks) == text
    long_first = "This opening sentence has many words, several clauses, and it runs on well past three seconds. Then."
    first = chunk_text(long_first, first_seconds=3.0)[0].text
    assert estimate_seconds(first.strip()) <= 3.0 and long_first.startswith(first)
    assert len(chunk_text(text)) < len(chunks)  # without it, the short sentence shares a chunk


# Prose with abbreviations, numbers, quotes and parentheses, several windows long once repeated.
PROSE = (
    'Dr. Ann Lee moved to St. Ives in 1998. She said "the sea is loud" (and it was). It rained for 3.5 days! '
    "Was the harbour safe? Nobody knew, e.g. the fishermen, i.e. the men who went out at 4 a.m. every day. "
    "The end of the day came slowly; the boats returned. Mr. Smith waited by the fire. "
)


def test_a_long_text_is_split_a_window_at_a_time_as_pysbd_splits_it_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import pysbd

    text = normalize_text(" ".join(f"{n}. {PROSE}" for n in range(120)))
    assert len(text) > 3 * text_module.SENTENCE_WINDOW
    given: list[int] = []
    processor = pysbd.Segmenter.processor

    def counted(self: pysbd.Segmenter, window: str) -> object:
        given.append(len(window))
        return processor(self, window)

    monkeypatch.setattr(pysbd.Segmenter, "processor", counted)
    sentences = split_sentences(text, "en")
    # pysbd's work grows faster than its input: it is given at most a window at once, each character about once.
    assert max(given) <= text_module.SENTENCE_WINDOW and sum(given) < 1.15 * len(text)
    monkeypatch.setattr(pysbd.Segmenter, "processor", processor)
    assert sentences == pysbd.Segmenter(language="en", clean=False).segment(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=alphabet, max_size=600))
def test_property_windows_keep_every_character_and_cue(raw: str) -> None:
    text = normalize_text(raw)
    with pytest.MonkeyPatch.context() as patch:  # small windows: most of these texts span several
        patch.setattr(text_module, "SENTENCE_WINDOW", 60)
        patch.setattr(text_module, "WINDOW_MARGIN", 12)
        sentences = split_sentences(text, "en")
    assert "".join(sentences) == text
    cuts = set(accumulate(len(s) for s in sentences))
    assert not [m.group() for m in CUE.finditer(text) if any(m.start() < c < m.end() for c in cuts)]


def test_a_long_run_of_words_is_cut_with_few_token_counts() -> None:
    words = " ".join(f"w{n}" for n in range(3_000))  # no sentence or clause mark: cut between words
    counted: list[str] = []

    def count(text: str) -> int:  # a token a word
        counted.append(text)
        return len(text.split())

    chunks = chunk_text(words, count_tokens=count, max_tokens=40, max_seconds=1_000)
    assert "".join(c.text for c in chunks) == words and [len(c.spoken.split()) for c in chunks] == [40] * 75
    # One at a time, every word was counted with the words before it in its chunk: over 3,000 counts.
    assert len(counted) < 1_500 and len(counted) == len(set(counted))  # and no text twice


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30), max_size=60), st.integers(min_value=1, max_value=90))
def test_property_packing_takes_the_runs_of_adding_one_part_at_a_time(sizes: list[int], limit: int) -> None:
    parts = ["x" * n for n in sizes]

    def fits(text: str) -> bool:
        return len(text) <= limit

    one_at_a_time: list[str] = []
    for part in parts:
        if one_at_a_time and fits(one_at_a_time[-1] + part):
            one_at_a_time[-1] += part
        else:
            one_at_a_time.append(part)
    assert _greedy(parts, fits) == one_at_a_time
