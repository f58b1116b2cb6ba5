"""Text preparation: normalize, split into sentences, pack into chunks Bark can speak.

Chunks are contiguous slices of the normalized text: joined back they give it exactly, so
nothing is dropped, duplicated or reordered. Bark's cues (`[laughs]`, `♪ ... ♪`) are never cut.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from barkserve.errors import InvalidRequest, TextTooLong

# About 13 s of speech per chunk keeps Bark under its ~14 s ceiling.
MAX_CHUNK_SEC = 13.0
# Under Bark's 256-token cap, with room for tokenizer differences.
MAX_CHUNK_TOKENS = 240
# Rough speaking rates, used to estimate a chunk's duration before generating it.
LATIN_CHARS_PER_SEC = 14.0
CJK_CHARS_PER_SEC = 5.0
# Bark's cues: a bracketed word or two (`[laughs]`, `[clears throat]`, `[MAN]`) and sung lines between
# ♪ marks. Longer brackets are text (a book's editorial note, "prints the [ ... prints the ]"), cut like
# any other, and a ♪ span is a cue only up to a few lines: a stray pair must not swallow a chapter.
MAX_BRACKET_CUE = 40
MAX_SONG_CUE = 300
CUE = re.compile(rf"\[[^\[\]\n]{{1,{MAX_BRACKET_CUE}}}\]|♪[^♪]{{0,{MAX_SONG_CUE}}}♪")
CLAUSE_END = re.compile(r"[,;:、，；：]\s*|\s[—–-]\s+|—|…")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af]")
# Zero-width non-joiner and joiner: invisible, but they change the written word (see normalize_text).
JOINERS = ("\u200c", "\u200d")
# Characters given to pysbd at once, and the end of a window whose sentences wait for the next one
# (see split_sentences).
SENTENCE_WINDOW = 10_000
WINDOW_MARGIN = 1_000
PYSBD_LANGUAGES = {"en", "de", "es", "fr", "it", "pl", "ru", "zh", "ja", "hi", "nl", "da", "el", "ar", "fa"}


@dataclass(frozen=True)
class Chunk:
    """A slice `text[start:end]` of the normalized text, spoken in one generation.

    Markup (barkserve.markup) adds what Bark is given when it differs from the text (`say`: respelled,
    normalized, tags removed), a voice and rate of its own, and the pauses around it.
    """

    text: str
    start: int
    end: int
    say: str | None = None  # what Bark is given; None: `spoken`
    voice: str | None = None  # the chunk's own voice name (SSML <voice>); None: the request's
    speed: float | None = None  # its own tempo (SSML <prosody rate>); None: the request's
    pause: float | None = None  # seconds of silence after it; None: the usual pause (none after the last)
    lead: float = 0.0  # seconds of silence before it (the first chunk, after leading pause tags)

    @property
    def spoken(self) -> str:
        return self.text.strip()

    @property
    def said(self) -> str:
        """What Bark is given for this chunk."""
        return self.spoken if self.say is None else self.say


def normalize_text(text: str) -> str:
    """NFC form; control characters and line/paragraph separators become spaces; invisible format
    characters (zero-width space, BOM, bidi controls, soft hyphen) are removed; runs of white space
    fold to one space.

    The zero-width joiner and non-joiner stay: in Persian, Hindi and other scripts (and in emoji
    sequences) they change how the word is written, so they are part of the text.
    """
    text = unicodedata.normalize("NFC", text)
    out = []
    for c in text:
        kind = unicodedata.category(c)
        if kind in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif kind != "Cf" or c in JOINERS:
            out.append(c)
    return " ".join("".join(out).split())


def check_text(text: object, limit: int | None = None, setting: str = "") -> str:
    """The caller's `text`, unchanged, if it is a string with something to speak after normalization
    and, when a `limit` is given, of at most `limit` characters (the server's `setting`); otherwise an
    `InvalidRequest` that says what is wrong.

    Every entry point (HTTP, OpenAI, jobs, CLI, Python) checks text here, so a text that folds to
    nothing (only zero-width, control or format characters) is refused before anything is queued.
    The limits are the edges' (`/synthesize` and `/v1/audio/speech` take `max_text_chars` and
    `openai_max_input_chars`, jobs `max_job_chars`); planning checks only what Bark can speak.
    """
    if not isinstance(text, str):
        raise InvalidRequest(f"text must be a string; got {type(text).__name__}")
    surrogate = next((c for c in text if "\ud800" <= c <= "\udfff"), None)
    if surrogate is not None:
        raise InvalidRequest(
            f"text contains a lone surrogate (U+{ord(surrogate):04X}), which is not a character; "
            "send valid Unicode (UTF-8 encoded JSON, or a \\u escape pair for characters beyond U+FFFF)"
        )
    if limit is not None and len(text) > limit:
        raise TextTooLong(f"text is {len(text)} characters; this server accepts at most {limit} (setting {setting})")
    if not "".join(c for c in normalize_text(text) if c not in JOINERS).strip():  # joiners alone say nothing
        what = "" if not text else " after removing white space, control and invisible format characters"
        raise InvalidRequest(f"text must have something to speak; it is empty{what}")
    return text


def estimate_seconds(text: str) -> float:
    """How long Bark will probably take to say `text`."""
    cjk = len(CJK.findall(text))
    return cjk / CJK_CHARS_PER_SEC + (len(text) - cjk) / LATIN_CHARS_PER_SEC


def guess_language(text: str) -> str:
    if KANA.search(text):
        return "ja"
    if HANGUL.search(text):
        return "en"  # Korean puts spaces and Latin-style punctuation between sentences
    return "zh" if CJK.search(text) else "en"


@lru_cache(maxsize=16)
def _segmenter(language: str):  # type: ignore[no-untyped-def]
    import pysbd

    return pysbd.Segmenter(language=language if language in PYSBD_LANGUAGES else "en", clean=False)


def split_sentences(text: str, language: str | None = None) -> list[str]:
    """Split normalized text into sentences (pysbd), keeping every character and every cue whole.

    pysbd's time grows faster than the length of what it is given, so a long text goes to it a window
    of `SENTENCE_WINDOW` characters at a time: the sentences that end more than `WINDOW_MARGIN` before
    the window's end are kept, and the next window starts where the last of them ends. A text no longer
    than one window is split in one call.
    """
    if not text:
        return []
    segmenter = _segmenter(language or guess_language(text))
    cuts: list[int] = []
    start = 0
    while len(text) - start > SENTENCE_WINDOW:
        end = start + SENTENCE_WINDOW
        kept = [c for c in _sentence_ends(segmenter, text[start:end]) if 0 < c <= SENTENCE_WINDOW - WINDOW_MARGIN]
        cuts.extend(start + c for c in kept)
        # Without a sentence end in the window, the next one starts at its margin (a very long sentence).
        start += kept[-1] if kept else SENTENCE_WINDOW - WINDOW_MARGIN
    cuts.extend(start + c for c in _sentence_ends(segmenter, text[start:]))
    return _slice(text, _cuttable(text, cuts))


def _sentence_ends(segmenter, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    """Where each sentence of `text` but the last ends, after the spaces that follow it.

    pysbd's own `segment` finds each sentence again in the text by a regular expression searched from
    its start (quadratic); its processor's sentences are found here from where the previous one ended.
    pysbd may drop or re-space characters: a sentence that is not in the text as such is skipped.
    """
    cuts, pos = [], 0
    for piece in segmenter.processor(text).process()[:-1]:
        found = text.find(piece.strip(), pos)
        if found < 0:
            continue
        pos = found + len(piece.strip())
        while pos < len(text) and text[pos] == " ":
            pos += 1
        cuts.append(pos)
    return cuts


def chunk_text(
    text: str,
    count_tokens: Callable[[str], int] = len,
    max_tokens: int = MAX_CHUNK_TOKENS,
    max_seconds: float = MAX_CHUNK_SEC,
    language: str | None = None,
    first_seconds: float | None = None,
    spoken_form: Callable[[str], str] | None = None,
) -> list[Chunk]:
    """Pack sentences into chunks under `max_tokens` and about `max_seconds` of speech.

    `spoken_form` turns a piece into what Bark will be given (numbers spelled out, respellings): the
    limits are measured on it. `count_tokens` is given the piece as written.

    A sentence too long alone is split at clause marks, then between words, then between characters.
    With `first_seconds` (streams), the first chunk is the first sentence alone, or its first clauses
    when it is longer than about `first_seconds`: it is generated first, so the listener hears it soon.
    """

    counts: dict[str, int] = {}  # a text's tokens, counted once: the tokenizer is most of planning's time

    def fits_within(seconds: float) -> Callable[[str], bool]:
        def fits(piece: str) -> bool:
            spoken = piece.strip()
            if estimate_seconds(spoken_form(spoken) if spoken_form else spoken) > seconds:
                return False
            if spoken not in counts:
                counts[spoken] = count_tokens(spoken)
            return counts[spoken] <= max_tokens

        return fits

    fits = fits_within(max_seconds)
    first = fits_within(min(first_seconds, max_seconds)) if first_seconds else fits
    pieces: list[str] = []
    for k, sentence in enumerate(split_sentences(text, language)):
        rule = first if k == 0 else fits
        pieces.extend([sentence] if rule(sentence) else _split_long(sentence, rule))
    # In streams the first chunk is the first piece alone; later ones pack pieces up to the limits.
    head = pieces[:1] if first_seconds else []
    chunks: list[Chunk] = []
    start = 0
    for part in [*head, *_greedy(pieces[len(head) :], fits)]:
        chunks.append(Chunk(part, start, start + len(part)))
        start += len(part)
    return chunks


def _split_long(sentence: str, fits: Callable[[str], bool]) -> list[str]:
    for pattern in (CLAUSE_END, re.compile(r"\s+"), None):
        if pattern is None:
            cuts = list(range(1, len(sentence)))
        else:
            cuts = [m.end() for m in pattern.finditer(sentence) if 0 < m.end() < len(sentence)]
        parts = _greedy(_slice(sentence, _cuttable(sentence, cuts)), fits)
        if all(fits(p) for p in parts):
            return parts
    return [sentence]  # a single cue longer than a chunk: spoken whole rather than cut


def _greedy(parts: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Consecutive parts joined while the joined text fits: from each part on, the longest run of parts
    whose text fits (one part alone is taken whether it fits or not).

    The run's length is found by trying 2, 3, 5, 9, ... parts, then halving the gap between the longest
    that fit and the shortest that did not: about 2 log2(n) questions to `fits` for a run of n parts
    instead of n. It is the run that adding one part at a time gives, because a text never fits where a
    shorter text that it begins with does not (token counts and speaking time grow with the text).
    """
    out: list[str] = []
    i = 0
    while i < len(parts):
        # parts[i : i + good] fits (or is one part); parts[i : i + bad] does not, or runs past the end.
        good, bad, step = 1, len(parts) - i + 1, 1
        while good + 1 < bad:
            probe = min(good + step, bad - 1)
            if not fits("".join(parts[i : i + probe])):
                bad = probe
                break
            good, step = probe, step * 2
        while good + 1 < bad:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if fits("".join(parts[i : i + mid])) else (good, mid)
        out.append("".join(parts[i : i + good]))
        i += good
    return out


def _slice(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in pairwise(bounds) if b > a]


def _cuttable(text: str, cuts: Iterable[int]) -> list[int]:
    """The `cuts` that do not fall inside a cue like `[laughs]` or `♪ la la ♪`."""
    cues = [m.span() for m in CUE.finditer(text)]  # in order, without overlaps
    starts = [a for a, _ in cues]
    out = []
    for cut in cuts:
        k = bisect_left(starts, cut) - 1  # the last cue that starts before the cut
        if k < 0 or cut >= cues[k][1]:
            out.append(cut)
    return out


def markdown_to_text(md: str) -> str:
    """Markdown as it would be read aloud: markup gone, Bark cues like `[laughs]` kept."""
    text = re.sub(r"```.*?```", " ", md, flags=re.S)
    # Bracket texts exclude '[' and targets '(' so that runs of unclosed brackets are linear, not quadratic.
    text = re.sub(r"!\[[^\[\]]*\]\([^()]*\)", " ", text)  # images
    text = re.sub(r"\[([^\[\]]+)\]\([^()]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+\.)\s+", "", text, flags=re.M)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    return text
