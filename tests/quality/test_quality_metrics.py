"""WER / CER after language-aware normalization, with Bark's cues and speaker tags left out."""

from __future__ import annotations

import pytest

from barkserve.quality import cer, normalize, speech_error, spoken_text, uses_cer, wer


@pytest.mark.parametrize(
    ("reference", "hypothesis", "language", "expected"),
    [
        # English: case, punctuation, contractions and spelled-out numbers are normalized away.
        ("Hello, World! How are you?", "hello world how are you", "en", 0.0),
        ("It's twenty-one dollars, Mr. Smith.", "it is $21 mister smith", "en", 0.0),
        ("The cat sat on the mat.", "the cat sit on the mat", "en", 1 / 6),
        ("The cat sat on the mat.", "the cat on the mat", "en", 1 / 6),
        # German and French: case and punctuation go, letters with diacritics stay letters.
        ("Das ist gut!", "das ist gut", "de", 0.0),
        ("Der Hund läuft schnell.", "der Hund lauft schnell", "de", 1 / 4),
        ("C'est l'été, n'est-ce pas ?", "c'est l'été n'est ce pas", "fr", 0.0),
        ("Je suis très content.", "je suis tres content", "fr", 1 / 4),
    ],
)
def test_word_error_rate(reference: str, hypothesis: str, language: str, expected: float) -> None:
    assert wer(reference, hypothesis, language) == pytest.approx(expected)
    assert speech_error(reference, hypothesis, language) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "language", "expected"),
    [
        ("今天天气很好。", "今天天气很好", "zh", 0.0),
        ("今天天气很好。", "今天天汽很好", "zh", 1 / 6),
        ("今天 天气很好", "今天天气 很好。", "zh", 0.0),  # spaces are not characters in CJK scoring
        ("こんにちは、世界。", "こんにちは世界", "ja", 0.0),
        ("こんにちは、世界。", "こんばんは世界", "ja", 2 / 7),
        ("안녕하세요.", "안녕하세용", "ko", 1 / 5),
    ],
)
def test_cjk_is_scored_by_characters(reference: str, hypothesis: str, language: str, expected: float) -> None:
    assert uses_cer(language)
    assert cer(reference, hypothesis, language) == pytest.approx(expected)
    assert speech_error(reference, hypothesis, language) == pytest.approx(expected)
    if expected:
        # By words an unspaced sentence is one word: any slip would cost the whole sentence.
        assert wer(reference, hypothesis, language) > expected


def test_bark_cues_and_speaker_tags_are_not_words() -> None:
    text = "WOMAN: [laughs] Hello there. ♪ la la la ♪ MAN: How are you? [sighs]"
    assert spoken_text(text) == "Hello there. How are you?"
    assert wer(text, "Hello there, how are you?", "en") == 0.0
    # Whisper's own marks for non-speech on the other side do not count either.
    assert wer(text, "(laughs) Hello there. ♪ la la ♪ How are you? [SIGHS]", "en") == 0.0
    # ...but a real missing word still does.
    assert wer(text, "hello there how you", "en") == pytest.approx(1 / 5)
    assert cer("[laughs] 你好 [music]", "你好", "zh") == 0.0


def test_text_that_only_looks_like_a_tag_is_kept() -> None:
    text = "The ratio is 3:1 at 10:30. Note: bring a pen."
    assert spoken_text(text) == text
    assert wer("Meet at 10:30.", "meet at", "en") > 0


def test_empty_sides() -> None:
    assert wer("[laughs]", "", "en") == 0.0  # nothing to say, nothing said
    assert wer("[laughs]", "hello", "en") == 1.0
    assert wer("hello there", "", "en") == 1.0
    assert cer("你好", "", "zh") == 1.0


def test_indic_vowel_signs_are_kept() -> None:
    # Whisper's basic normalizer turns combining marks into spaces, which would split Hindi words apart.
    assert normalize("नमस्ते, दुनिया!", "hi") == "नमस्ते दुनिया"
    assert cer("नमस्ते", "नमस्त", "hi") > 0  # a dropped vowel sign is an error
