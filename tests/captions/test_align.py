"""CTC forced alignment on synthetic emissions whose character boundaries are known, and word timing."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from barkserve.captions import AlignmentError, Cue, align_words, forced_align

BLANK, SEP = 0, 1
LETTERS = {c: i + 2 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")}


def emissions(layout: list[tuple[int, int]], vocab: int = 30, sharp: float = 8.0, seed: int = 0) -> np.ndarray:
    """(T, V) log-probabilities: each (token, frames) of `layout` is the likely token for that many frames,
    over random background scores, so the best path is known."""
    rng = np.random.default_rng(seed)
    rows = []
    for token, frames in layout:
        for _ in range(frames):
            scores = rng.normal(0.0, 1.0, vocab)
            scores[token] += sharp
            rows.append(scores)
    logits = np.array(rows)
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def test_the_path_finds_each_character_where_it_is_spoken() -> None:
    # H E L L O: the two Ls are one blank apart, as CTC needs for a repeat.
    layout = [(BLANK, 3), (8, 2), (5, 4), (BLANK, 1), (12, 3), (BLANK, 2), (12, 2), (15, 5), (BLANK, 6)]
    spans = forced_align(emissions(layout), [8, 5, 12, 12, 15], BLANK)
    assert spans == [(3, 5), (5, 9), (10, 13), (15, 17), (17, 22)]


def test_the_path_is_found_under_noise_that_hides_no_character() -> None:
    rng = np.random.default_rng(1)
    targets = [int(t) for t in rng.integers(2, 30, size=100)]  # 201 states: more than an int8 holds
    layout, truth, frame = [], [], 0
    for token in targets:
        gap, length = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        layout += [(BLANK, gap), (token, length)]
        truth.append((frame + gap, frame + gap + length))
        frame += gap + length
    layout.append((BLANK, 3))
    assert forced_align(emissions(layout, sharp=5.0, seed=2), targets, BLANK) == truth


@pytest.mark.parametrize(
    ("frames", "targets", "message"),
    [(10, [], "no characters"), (4, [3, 4, 5, 6, 7], "cannot hold"), (4, [3, 3, 3], "cannot hold")],
)
def test_impossible_alignments_say_why(frames: int, targets: list[int], message: str) -> None:
    with pytest.raises(AlignmentError, match=message):
        forced_align(emissions([(BLANK, frames)]), targets, BLANK)


def test_repeats_fit_exactly_when_there_is_one_blank_between_them() -> None:
    spans = forced_align(emissions([(3, 1), (BLANK, 1), (3, 1), (BLANK, 1), (3, 1)]), [3, 3, 3], BLANK)
    assert spans == [(0, 1), (2, 3), (4, 5)]


class SyntheticAligner:
    """An `Aligner` whose emissions are built from a known layout: 100 frames per second, like wav2vec2's 50
    times two, over audio that only sets the frame count."""

    sample_rate = 16_000
    blank = BLANK
    separator: int | None = SEP

    def __init__(self, layout: list[tuple[int, int]]) -> None:
        self.layout = layout
        self.calls: list[int] = []

    def tokens(self, word: str) -> list[int]:
        return [LETTERS[c] for c in word.upper() if c in LETTERS]

    def emissions(self, audio: np.ndarray) -> np.ndarray:
        self.calls.append(len(audio))
        frames = len(audio) * 100 // self.sample_rate
        layout = [*self.layout, (BLANK, frames - sum(n for _, n in self.layout))]
        return emissions(layout)


def spoken(words: list[tuple[str, int, int]], frames: int) -> list[tuple[int, int]]:
    """A layout saying each (word, first frame, frames per letter), with separators and blanks between."""
    layout, at = [], 0
    for word, first, per_letter in words:
        layout.append((SEP if at else BLANK, first - at))
        for c in word:
            layout.append((LETTERS[c], per_letter))
        at = first + per_letter * len(word)
    layout.append((BLANK, frames - at))
    return layout


def test_words_get_the_times_of_their_letters_and_cues_start_at_their_first_word() -> None:
    # Two cues over 3 s; sentence timing put the boundary at 1.5 s, but the second starts at 2.0 s.
    layout = spoken([("HI", 20, 10), ("THERE", 60, 8), ("BYE", 200, 10), ("NOW", 250, 5)], 300)
    cues = [Cue(0.0, 1.5, "Hi, there!"), Cue(1.5, 3.0, "Bye—now.")]
    audio = np.zeros(3 * 24_000, dtype=np.float32)
    aligned, warnings = align_words(audio, 24_000, cues, SyntheticAligner(layout))
    assert warnings == []
    assert [(c.start, c.end) for c in aligned] == [(0.0, 2.0), (2.0, 3.0)]
    hi, there = aligned[0].words
    assert (hi.text, there.text) == ("Hi,", "there!")  # the original words, punctuation kept
    assert hi.start == pytest.approx(0.2) and hi.end == pytest.approx(0.4)
    assert there.start == pytest.approx(0.6) and there.end == pytest.approx(1.0)
    (both,) = aligned[1].words  # "Bye—now." has no white space: one word
    assert both.start == pytest.approx(2.0) and both.end == pytest.approx(2.65)


def test_words_without_known_letters_share_the_gap_between_their_neighbours() -> None:
    layout = spoken([("IN", 10, 10), ("PIGS", 150, 10)], 200)
    cues = [Cue(0.0, 2.0, "In 1990 — pigs.")]
    aligned, warnings = align_words(np.zeros(48_000, dtype=np.float32), 24_000, cues, SyntheticAligner(layout))
    assert warnings == []
    words = aligned[0].words
    assert [w.text for w in words] == ["In", "1990", "—", "pigs."]
    assert words[1].start == pytest.approx(0.3) and words[2].end == pytest.approx(1.5)
    assert words[1].end == pytest.approx(words[2].start) == pytest.approx(0.9)


def test_text_the_aligner_cannot_read_keeps_sentence_timing_with_a_warning() -> None:
    cues = [Cue(0.0, 2.0, "Привет, мир."), Cue(2.0, 40.0, "Hello.")]
    audio = np.zeros(40 * 24_000, dtype=np.float32)
    aligner = SyntheticAligner(spoken([("HELLO", 100, 10)], 3800))
    aligned, warnings = align_words(audio, 24_000, cues, aligner)
    assert aligned[0] == cues[0] and len(warnings) == 1  # two windows: the first fails alone
    assert "no character the aligner's vocabulary knows" in warnings[0] and "sentence timing" in warnings[0]
    assert [w.text for w in aligned[1].words] == ["Hello."]


def test_too_little_audio_for_the_text_falls_back_with_a_warning() -> None:
    cues = [Cue(0.0, 0.05, "Far too many letters for this.")]
    aligned, warnings = align_words(np.zeros(24_000, dtype=np.float32), 24_000, cues, SyntheticAligner([]))
    assert aligned == cues and "too short" in warnings[0]


def test_long_audio_is_aligned_in_windows_of_at_most_thirty_seconds() -> None:
    cues = [Cue(i * 10.0, (i + 1) * 10.0, "Ten seconds of words.") for i in range(7)]
    aligner = SyntheticAligner([])
    aligned, _ = align_words(np.zeros(70 * 16_000, dtype=np.float32), 16_000, cues, aligner)
    assert max(aligner.calls) <= 30 * 16_000 and sum(aligner.calls) == 70 * 16_000
    assert all(len(c.words) == 4 for c in aligned)
    times = [t for c in aligned for w in c.words for t in (w.start, w.end)]
    assert times == sorted(times) and times[0] >= 0.0 and times[-1] <= 70.0
    for a, b in pairwise(aligned):
        assert a.end == b.start
