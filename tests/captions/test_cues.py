"""Sentence cues: the original text (cues removed), timed by the chunks' real places in the audio."""

from __future__ import annotations

import re
import unicodedata
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkserve.captions import Cue, Word, captions_for, chunk_spans, sentence_cues, shift
from barkserve.captions.source import normalized_offsets
from barkserve.captions.timing import pauses, snap_to_pauses
from barkserve.config import ServerConfig
from barkserve.errors import InvalidRequest
from barkserve.synthesizer import Synthesizer
from barkserve.text import chunk_text, estimate_seconds, normalize_text
from support import FakeEngine

RATE = 24_000


def without_cues(text: str) -> str:
    """The text a caption must show: Bark's cues and speaker tags out, white space folded."""
    text = re.sub(r"\[[^\[\]]*\]|♪[^♪]*♪", " ", text)
    text = re.sub(r"(?<!\S)(?:MAN|WOMAN):(?!\S)", " ", text)
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text).split())


def even_spans(count: int, seconds: float = 1.0, pause: float = 0.25) -> list[tuple[float, float]]:
    return [(i * (seconds + pause), i * (seconds + pause) + seconds) for i in range(count)]


def cues_of(text: str, max_seconds: float = 13.0) -> tuple[list[Cue], list[tuple[float, float]]]:
    chunks = chunk_text(normalize_text(text), max_seconds=max_seconds)
    spans = even_spans(len(chunks))
    return sentence_cues(text, chunks, spans), spans


def assert_well_formed(cues: list[Cue], spans: list[tuple[float, float]]) -> None:
    assert cues[0].start == spans[0][0] and cues[-1].end == spans[-1][1]
    for cue in cues:
        assert cue.start <= cue.end and cue.text == cue.text.strip() and cue.text
    for a, b in pairwise(cues):
        assert a.end == b.start  # contiguous: together they cover the audio


TEXTS = [
    # double spaces, a newline, a tab
    "Hello  there,  my friend!\nThis is\ta test.  And  a third one?",
    # a soft hyphen and a zero-width space (normalize_text drops both), a decomposed é (NFC composes it)
    "Co\u00adoperation is key.\u200b It is a cafe\u0301 au lait kind of day. Fine.",
    # Bark's cues and a speaker tag are not caption text
    "[laughs] Well, that was fun. MAN: Are you sure? ♪ la la la ♪ I am sure [sighs] quite sure.",
    # a line separator, control characters, a BOM
    "\ufeffFirst line.\u2028Second line.\x07 Third line.",
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("max_seconds", [13.0, 1.5])
def test_cue_text_is_the_original_without_cues(text: str, max_seconds: float) -> None:
    cues, spans = cues_of(text, max_seconds)
    assert " ".join(c.text for c in cues) == without_cues(text)
    assert_well_formed(cues, spans)


def test_original_form_is_kept_where_normalization_changes_it() -> None:
    cues, _ = cues_of(TEXTS[1], max_seconds=1.5)
    joined = " ".join(c.text for c in cues)
    assert "Co\u00adoperation" in joined and "cafe\u0301" in joined  # not "Cooperation", not "café"
    assert normalize_text(TEXTS[1]) != TEXTS[1]


def test_one_cue_per_sentence_and_sentences_of_a_chunk_split() -> None:
    text = "One sentence here. Another sentence there. A third to end."
    chunks = chunk_text(normalize_text(text))
    assert len(chunks) == 1  # all in one chunk: the cues must still be per sentence
    cues = sentence_cues(text, chunks, [(0.0, 6.0)])
    assert [c.text for c in cues] == ["One sentence here.", "Another sentence there.", "A third to end."]


def test_a_long_sentence_is_cut_where_its_chunks_meet() -> None:
    text = "This sentence is long, it goes on and on, and it must be split, because a chunk is short."
    chunks = chunk_text(normalize_text(text), max_seconds=2.0)
    assert len(chunks) > 1
    spans = even_spans(len(chunks))
    cues = sentence_cues(text, chunks, spans)
    assert [c.text for c in cues] == [c.spoken for c in chunks]
    assert [c.start for c in cues] == [s for s, _ in spans]  # each chunk's part starts with its chunk


def test_within_a_chunk_without_audio_time_follows_spoken_length() -> None:
    text = "Short one. This second sentence is a good deal longer than the first."
    chunks = chunk_text(normalize_text(text))
    cues = sentence_cues(text, chunks, [(0.0, 10.0)])
    first, second = estimate_seconds("Short one."), estimate_seconds(cues[1].text)
    assert cues[0].end == pytest.approx(10.0 * first / (first + second))


def bursts(layout: list[tuple[str, float]], seed: int = 0) -> np.ndarray:
    """Audio of ("speech" | "pause", seconds) parts: noise for speech, zeros for pauses."""
    rng = np.random.default_rng(seed)
    parts = [
        (rng.standard_normal(round(sec * RATE)) * 0.3 if kind == "speech" else np.zeros(round(sec * RATE)))
        for kind, sec in layout
    ]
    return np.concatenate(parts).astype(np.float32)


def test_within_a_chunk_boundaries_move_to_the_pauses_in_the_audio() -> None:
    # Three sentences whose spoken lengths (in the audio) are far from their text lengths' shares.
    text = "A tiny one. The second sentence is much longer in text than in sound. Third one here."
    layout = [("speech", 2.0), ("pause", 0.3), ("speech", 1.0), ("pause", 0.4), ("speech", 1.5)]
    audio = bursts(layout)
    chunks = chunk_text(normalize_text(text))
    assert len(chunks) == 1
    duration = len(audio) / RATE
    plain = sentence_cues(text, chunks, [(0.0, duration)])
    heard = sentence_cues(text, chunks, [(0.0, duration)], audio=audio, sample_rate=RATE)
    assert [c.text for c in heard] == [c.text for c in plain]
    # Speech resumes at 2.3 s and 3.7 s: there the next caption starts (to a 10 ms frame).
    assert heard[1].start == pytest.approx(2.3, abs=0.011)
    assert heard[2].start == pytest.approx(3.7, abs=0.011)
    assert abs(plain[1].start - 2.3) > 0.3  # the proportional guess alone was far off


def test_boundaries_stay_proportional_where_the_audio_has_no_pause() -> None:
    audio = bursts([("speech", 4.0)])
    assert pauses(audio, RATE) == []
    assert snap_to_pauses(audio, RATE, [1.0, 3.0]) == [1.0, 3.0]


def test_pauses_ignore_leading_trailing_and_short_silences() -> None:
    audio = bursts([("pause", 0.5), ("speech", 1.0), ("pause", 0.05), ("speech", 1.0), ("pause", 0.2)])
    audio = np.concatenate([audio, bursts([("speech", 0.5), ("pause", 0.5)], seed=1)])
    found = pauses(audio, RATE)
    assert len(found) == 1  # the 50 ms gap is too short; the edges are no pauses
    assert found[0][0] == pytest.approx(2.55, abs=0.011) and found[0][1] == pytest.approx(2.75, abs=0.011)


def test_cue_only_sentences_give_their_time_to_the_caption_before() -> None:
    text = "Hello there. [laughs] Goodbye now."
    chunks = chunk_text(normalize_text(text), max_seconds=1.0)
    spans = even_spans(len(chunks))
    cues = sentence_cues(text, chunks, spans)
    assert [c.text for c in cues] == ["Hello there.", "Goodbye now."]
    assert_well_formed(cues, spans)


def test_text_of_cues_only_has_no_captions() -> None:
    chunks = chunk_text(normalize_text("[laughs] ♪ la la ♪"))
    assert sentence_cues("[laughs] ♪ la la ♪", chunks, [(0.0, 2.0)]) == []


@pytest.mark.parametrize(
    ("chunks_of", "spans", "message"),
    [
        ("other text", [(0.0, 1.0)], "chunk_text"),
        ("Hello there.", [(0.0, 1.0), (1.0, 2.0)], "one span per chunk"),
        ("Hello there.", [(1.0, 0.5)], "0 <= start <= end"),
    ],
)
def test_chunks_and_spans_that_do_not_belong_together_are_refused(
    chunks_of: str, spans: list[tuple[float, float]], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        sentence_cues("Hello there.", chunk_text(chunks_of), spans)


def test_overlapping_spans_are_refused() -> None:
    chunks = chunk_text("One here. Two here.", max_seconds=0.8)
    assert len(chunks) == 2
    with pytest.raises(InvalidRequest, match="overlap"):
        sentence_cues("One here. Two here.", chunks, [(0.0, 2.0), (1.0, 3.0)])


SAMPLE = st.lists(
    st.sampled_from(["Hello", "world", "Café", "cafe\u0301", "co\u00adop", "[laughs]", "♪ la ♪", "MAN:", "1990"])
    | st.sampled_from([".", "!", "?", ",", "  ", "\n", "\t", " ", "\u200b", "\x0b"]),
    min_size=1,
    max_size=40,
).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(SAMPLE, st.sampled_from([0.5, 2.0, 13.0]))
def test_any_text_gives_its_own_words_back_in_order(text: str, max_seconds: float) -> None:
    normalized = normalize_text(text)
    if not normalized:
        return
    chunks = chunk_text(normalized, max_seconds=max_seconds)
    spans = even_spans(len(chunks))
    cues = sentence_cues(text, chunks, spans)
    assert " ".join(c.text for c in cues) == without_cues(text)
    if cues:
        assert_well_formed(cues, spans)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalized_offsets_reproduce_normalize_text(text: str) -> None:
    normalized, offsets = normalized_offsets(text)
    assert normalized == normalize_text(text)
    assert len(offsets) == len(normalized) + 1 and offsets == sorted(offsets)


def test_shift_moves_cues_and_words() -> None:
    cues = [Cue(0.0, 1.0, "Hi there.", (Word(0.0, 0.4, "Hi"), Word(0.5, 1.0, "there.")))]
    moved = shift(cues, 12.5)
    assert moved == [Cue(12.5, 13.5, "Hi there.", (Word(12.5, 12.9, "Hi"), Word(13.0, 13.5, "there.")))]


def test_chunk_spans_come_from_piece_lengths() -> None:
    assert chunk_spans([300, 500, 200], [100, 100, 0], 100) == [(0.0, 2.0), (3.0, 7.0), (8.0, 10.0)]


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_synthesis_reports_where_each_chunk_is_in_its_audio(tiny_model_dir: Path, tmp_path: Path, speed: float) -> None:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    text = "First sentence is here. " * 20 + "And the last one."
    with Synthesizer(config, engine_factory=FakeEngine) as synth:
        result = synth.synthesize(text, options={"sentence_pause_sec": 0.5, "speed": speed, "seed": 3})
    spans = result.chunk_spans
    assert len(spans) == len(result.chunks) == result.chunk_count > 1
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(result.duration_sec)
    for (_, end), (start, _) in pairwise(spans):
        assert start - end == pytest.approx(0.5 / speed, abs=1 / RATE)  # the pause between them
        assert np.all(result.audio[round(end * RATE) : round(start * RATE)] == 0.0)
    for start, end in spans:  # FakeEngine's audio is a non-zero level: speech fills the span
        assert np.all(result.audio[round(start * RATE) + 300 : round(end * RATE) - 300] != 0.0)
    cues, warnings = captions_for(result)
    assert warnings == [] and " ".join(c.text for c in cues) == without_cues(text)
    assert cues[0].start == 0.0 and cues[-1].end == pytest.approx(result.duration_sec)
