"""Word and character error rates between the text Bark was asked to say and what an ASR model heard.

Both sides go through the same steps before scoring:

1. Bark's cues are removed: `[laughs]`, `[MAN]`, `♪ la la ♪` and speaker tags such as `MAN:` or
   `WOMAN:` are directions to the model, not words it should say, so they must not count as errors.
2. A normalizer suited to the language: Whisper's English normalizer (numbers, contractions,
   punctuation, case; shipped by transformers) for English; for every other language a basic one
   that folds case and width (NFKC) and turns punctuation and symbols into spaces but keeps
   combining marks, which in Hindi and other Indic scripts are letters (Whisper's own basic
   normalizer turns them into spaces).
3. CJK text (zh, ja, ko) is scored by characters (CER) with white space removed; the others by words.

jiwer computes the edit distances.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from barkserve.text import CUE

# Languages written without spaces between words (Korean has spaces, but Whisper and Bark place
# them inconsistently, and characters are the usual unit for Korean ASR too).
CJK_LANGUAGES = frozenset({"zh", "ja", "ko"})
# A speaker tag at the start of the text or of a sentence: `MAN:`, `WOMAN:`, `NARRATOR:`, `SPEAKER 1:`.
SPEAKER_TAG = re.compile(r"(?:^|(?<=[\s.!?。！？]))[A-Z][A-Z]+(?: [A-Z0-9]+)?:(?=\s|$)")
# Text Whisper writes for non-speech: `(laughs)`, `*sighs*`; brackets and ♪ spans are covered by CUE.
NON_SPEECH = re.compile(r"\([^()]*\)|\*[^*]*\*")


def spoken_text(text: str) -> str:
    """`text` without Bark's cues (`[laughs]`, `♪ ... ♪`) and speaker tags (`MAN:`)."""
    text = CUE.sub(" ", text)
    text = SPEAKER_TAG.sub(" ", text)
    return " ".join(text.split())


def normalize(text: str, language: str) -> str:
    """The scoring form of `text`: cues removed, then the language's normalizer (see the module doc)."""
    text = NON_SPEECH.sub(" ", spoken_text(text))
    if _base(language) == "en":
        return str(_english_normalizer()(text))
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in folded)
    return " ".join(kept.split())


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Word error rate of `hypothesis` against `reference`, both normalized for `language`.

    Returns:
        (substitutions + deletions + insertions) / reference words. With nothing to say in the
        reference (only cues), 0.0 if nothing was heard and 1.0 otherwise.
    """
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    return _rate(ref, hyp, by_chars=False)


def cer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Character error rate after normalization; CJK text is compared without white space.

    Returns:
        Edits / reference characters, with the same empty-reference rule as `wer`.
    """
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if _base(language) in CJK_LANGUAGES:
        ref, hyp = "".join(ref.split()), "".join(hyp.split())
    return _rate(ref, hyp, by_chars=True)


def uses_cer(language: str) -> bool:
    """Whether CER, not WER, is the primary measure for `language`."""
    return _base(language) in CJK_LANGUAGES


def speech_error(reference: str, hypothesis: str, language: str = "en") -> float:
    """The primary error rate for `language`: CER for Chinese, Japanese and Korean, WER otherwise."""
    return cer(reference, hypothesis, language) if uses_cer(language) else wer(reference, hypothesis, language)


def _rate(reference: str, hypothesis: str, by_chars: bool) -> float:
    """jiwer's rate over characters or words of normalized text, with empty sides handled here."""
    import jiwer

    if not reference:
        return 0.0 if not hypothesis else 1.0
    if not hypothesis:
        return 1.0  # all deletions; jiwer refuses an empty hypothesis
    return float(jiwer.cer(reference, hypothesis) if by_chars else jiwer.wer(reference, hypothesis))


def _base(language: str) -> str:
    return language.lower().replace("_", "-").split("-")[0]


@lru_cache(maxsize=1)
def _english_normalizer() -> Any:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # No British-to-American spelling table ships with transformers (checkpoints carry it as
    # normalizer.json); without it "colour" and "color" differ, which Bark never mixes up anyway.
    return EnglishTextNormalizer({})
