"""A book's language, and the voice that reads it when the user names none.

The language comes from the book's metadata (EPUB `dc:language`, PDF `/Lang`) and, when it has none,
from its text (langdetect, seeded so the same text always gives the same answer). Bark's presets speak
BARK_LANGUAGES: a book in one of them is read by the preset of its language with the default voice's
speaker number (`v2/en_speaker_6` as default reads a German book with `v2/de_speaker_6`); a book in
another language is read by the default voice, with a warning that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BARK_LANGUAGES = ("en", "de", "es", "fr", "hi", "it", "ja", "ko", "pl", "pt", "ru", "tr", "zh")
# How much text detection looks at: a few pages say the language as surely as the whole book.
SAMPLE_CHARS = 20_000
LANGUAGE_TAG = re.compile(r"([A-Za-z]{2,3})(?:[-_].*)?")
# ISO 639-2 codes books use in place of ISO 639-1 ("ger", "fre").
THREE_LETTER = {
    "eng": "en", "ger": "de", "deu": "de", "spa": "es", "fre": "fr", "fra": "fr", "hin": "hi", "ita": "it",
    "jpn": "ja", "kor": "ko", "pol": "pl", "por": "pt", "rus": "ru", "tur": "tr", "chi": "zh", "zho": "zh",
}  # fmt: skip
KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
PRESET = re.compile(r"^(?:v2/)?([a-z]{2})_speaker_(\d)$")


def normalize_language(tag: str | None) -> str | None:
    """A language tag ("pt_BR", "zh-CN", "ger") as a lower-case ISO 639-1 code, or None when it is no tag."""
    match = LANGUAGE_TAG.fullmatch((tag or "").strip())
    if match is None:
        return None
    code = match.group(1).lower()
    return THREE_LETTER.get(code, code if len(code) == 2 else None)


def detect_language(text: str) -> str | None:
    """The language of `text` (langdetect on its first SAMPLE_CHARS characters); None when it cannot tell."""
    sample = text[:SAMPLE_CHARS]
    if len(sample.split()) < 3 and len(sample) < 20:
        return None
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0  # langdetect samples at random: a fixed seed makes it give one answer
    try:
        return normalize_language(detect(sample))
    except LangDetectException:
        return None


def script_language(text: str) -> str | None:
    """ja, ko or zh when most of the letters of `text` (a sample) are CJK: kana means Japanese, hangul
    Korean, Han alone Chinese. Detectors trained on words miss these in text without spaces."""
    sample = text[:SAMPLE_CHARS]
    letters = sum(c.isalpha() for c in sample)
    kana, hangul = len(KANA.findall(sample)), len(HANGUL.findall(sample))
    han = len(HAN.findall(sample))
    if not letters or kana + hangul + han < 0.3 * letters:
        return None
    if kana >= 0.05 * (kana + han):
        return "ja"
    return "ko" if hangul > han else "zh"


def book_language(declared: str | None, text: str) -> str | None:
    """The declared language, else the one detected from `text`; a text written mostly in a CJK script
    overrules a declaration of another language (a DocBook-made Japanese EPUB declares `en`)."""
    script = script_language(text)
    language = normalize_language(declared)
    if script is not None and language != script:
        return script
    return language or detect_language(text)


@dataclass(frozen=True)
class VoiceChoice:
    """The voice a book is read with when its user names none, and a warning when it is not the book's language."""

    voice: str | None  # None: the server's default voice
    warning: str | None = None


def voice_for_language(language: str | None, default_voice: str) -> VoiceChoice:
    """The preset of `language` with the speaker number of `default_voice` (a preset) or 0 (a custom voice).

    The default voice itself when it already speaks `language`, when the language is unknown, or when
    Bark has no preset of it (then with a warning).
    """
    match = PRESET.match(default_voice)
    if language is None or (match is not None and match.group(1) == language):
        return VoiceChoice(None)
    if language not in BARK_LANGUAGES:
        return VoiceChoice(
            None,
            f"the book's language ({language}) is not one Bark speaks ({', '.join(BARK_LANGUAGES)}); "
            f"it is read with the default voice {default_voice}",
        )
    return VoiceChoice(f"v2/{language}_speaker_{match.group(2) if match else 0}")
