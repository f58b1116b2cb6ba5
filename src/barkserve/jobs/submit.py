"""The one way a durable job is accepted: validate, resolve model and voice, fix the seed, store.

`POST /jobs` and `barkserve book` both call `prepare_job` then `submit_job`, so a job is checked
with the same limits (`max_job_chars`) that the runner later plans it with.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from barkserve.audio.encode import AudioFormat, get_format
from barkserve.books.language import voice_for_language
from barkserve.books.model import Book
from barkserve.books.voices import Segment, parse_chapter_voices, voice_book
from barkserve.config import NotifySettings
from barkserve.errors import InvalidRequest
from barkserve.jobs.store import Job, JobStore, fingerprint
from barkserve.options import SynthesisOptions
from barkserve.synthesizer import Synthesizer
from barkserve.text import check_text

MAX_KEY_CHARS = 256
BOOK_OUTPUTS = ("m4b", "zip", "single", "epub3")


@dataclass(frozen=True)
class JobRequest:
    """A validated job, before it is stored: what it asks for and its fingerprint."""

    text: str
    voice: str  # resolved voice name
    model: str  # canonical allowlisted model
    format: AudioFormat
    options: SynthesisOptions  # seed may still be None
    book: dict[str, Any] | None = None  # a book job's JobBook fields (title, author, output, chapters, cover)
    caption_words: bool = False  # time each word of the captions when the audio is assembled
    warnings: tuple[str, ...] = ()  # what the job should tell its user from the start (a book's skipped parts)
    webhook: str | None = None  # a checked URL to POST the job's end to (`jobs.notify`)
    upload: str | None = None  # "audiobookshelf": upload the finished book there
    cast: dict[str, Any] | None = None  # a full cast's sheet (cast.json), for the plan; not stored

    @property
    def fields(self) -> dict[str, Any]:
        """What the job asks for, as stored and as fingerprinted (seed as the caller gave it)."""
        fields = {
            "text": self.text,
            "voice": self.voice,
            "model": self.model,
            "format": self.format.name,
            "options": self.options.to_dict(),
        }
        # Only when asked for: a job without them keeps the fingerprint it had before jobs took them.
        extra: dict[str, Any] = {"caption_words": True} if self.caption_words else {}
        extra |= {"webhook": self.webhook} if self.webhook else {}
        extra |= {"upload": self.upload} if self.upload else {}
        return {**fields, **extra}

    @property
    def fingerprint(self) -> str:
        if self.book is None:
            return fingerprint(self.fields)
        book = {
            **self.book,
            **{
                k: hashlib.sha256(v).hexdigest()
                for k in ("cover", "source")
                if isinstance(v := self.book.get(k), bytes)
            },
        }
        return fingerprint({**self.fields, "book": book})


def prepare_job(
    synth: Synthesizer,
    text: object,
    voice: object = None,
    model: object = None,
    fmt: object = "mp3",
    options: SynthesisOptions | Mapping[str, Any] | None = None,
    caption_words: object = False,
) -> JobRequest:
    """Check a job's request now, so a bad one fails at submission and not hours later.

    With `caption_words`, the aligner that times the caption words is loaded now too.

    Raises:
        InvalidRequest: bad text (over `max_job_chars`), voice, model, format, options or caption_words
            (or word captions off on this server); AlignerUnavailable: the aligner cannot be loaded.
    """
    text = check_text(text, synth.config.max_job_chars, "max_job_chars")
    opts = options if isinstance(options, SynthesisOptions) else SynthesisOptions.from_dict(options or {})
    audio_format = get_format(fmt)
    model_name = synth.registry.resolve(model)
    voices = synth.registry.voices(model_name)
    voice_name = voices.resolve_name(voice)
    voices.load(voice_name)  # a broken voice file fails now
    words = check_caption_words(synth, caption_words)
    return JobRequest(text, voice_name, model_name, audio_format, opts, caption_words=words)


def check_caption_words(synth: Synthesizer, value: object) -> bool:
    """`caption_words` if it is a boolean; when true, the server's aligner loaded (a job never learns
    hours later that its word times cannot be made)."""
    if not isinstance(value, bool):
        raise InvalidRequest(f"caption_words must be true or false; got {value!r}")
    if value:
        from barkserve.captions import aligner_for

        aligner_for(synth.config.scorers)
    return value


def prepare_book_job(
    synth: Synthesizer,
    book: Book,
    voice: object = None,
    model: object = None,
    fmt: object = "mp3",
    options: SynthesisOptions | Mapping[str, Any] | None = None,
    output: str = "m4b",
    chapters: list[int] | None = None,
    chapter_voices: object = None,
    caption_words: object = False,
    cast: object = None,
    cast_llm: Any = None,
) -> JobRequest:
    """Check a book job now: its voices (the book's, each chapter's, every `[voice:NAME]` tag), the
    chapters chosen (`chapters`, numbered from 1) and the text's size, before anything is generated.

    `output` is "m4b" (an audiobook with chapter marks), "zip" (a file per chapter in `fmt`),
    "single" (the whole book as one file in `fmt`) or "epub3" (a read-along EPUB 3: the book's own
    pages, or pages made from its text, with each chapter's audio and Media Overlays).
    `caption_words` as for `prepare_job`. With no `voice`, the book's language picks it
    (`books.language.voice_for_language`); the request's `warnings` are the book's
    skipped parts and a language Bark does not speak.
    `cast` reads each character's lines in their own voice: "auto" (a cast sheet made from the book)
    or a cast sheet (`books.cast_sheet`, as an object or JSON text); `cast_llm` (a `books.cast_llm.CastLLM`)
    labels the speakers instead of the rules where it answers well.

    Raises:
        InvalidRequest: a bad chapter selection, output, voice (with its chapter and line), model,
            format, options or caption_words; InvalidBook: a chapter with nothing to read;
            AlignerUnavailable: word captions asked for and the aligner cannot be loaded.
    """
    if output not in BOOK_OUTPUTS:
        raise InvalidRequest(f"output must be one of {list(BOOK_OUTPUTS)}; got {output!r}")
    overrides = parse_chapter_voices(chapter_voices)
    last = len(book.chapters)
    outside = sorted(n for n in overrides if n > last)
    if outside:
        raise InvalidRequest(f"chapter voices name chapters {outside}; this book has chapters 1-{last}")
    selected = book.select(chapters)
    numbers = sorted(set(chapters)) if chapters is not None else None
    text = "\n\n".join(c.text for c in selected.chapters)
    base = prepare_job(synth, text, voice=voice, model=model, fmt=fmt, options=options)
    voices = synth.registry.voices(base.model)

    def resolve(name: object) -> str:
        resolved = voices.resolve_name(name)
        voices.load(resolved)  # a broken voice file fails now
        return resolved

    book_voice, warnings = base.voice, list(book.skipped)
    if voice is None:  # the user named no voice: the book's language chooses it
        choice = voice_for_language(book.language, voices.default_voice)
        book_voice = resolve(choice.voice) if choice.voice is not None else base.voice
        warnings += [choice.warning] if choice.warning else []
    lines, sheet = None, None
    if cast is not None and cast != "":  # "" as a form leaves a field empty: no cast
        from barkserve.books.cast_sheet import cast_lines

        lines, sheet, found = cast_lines(selected, cast, cast_llm, book_voice, resolve)
        warnings += found
    voiced = voice_book(selected, book_voice, resolve, overrides, numbers, lines)
    spec = {
        "title": book.title,
        "author": book.author,
        "output": output,
        "cover": book.cover if output == "m4b" else None,
        "chapters": [{"title": c.title, "segments": [segment_fields(s) for s in c.segments]} for c in voiced],
    }
    if output == "epub3":  # only then: other jobs keep the fingerprint they had before
        spec |= {"source": book.source, "language": book.language}
    words = check_caption_words(synth, caption_words)
    return JobRequest(
        base.text, book_voice, base.model, base.format, base.options, spec, words, tuple(warnings), cast=sheet
    )


def segment_fields(segment: Segment) -> dict[str, Any]:
    """A segment as a job stores it; `speaker` only in a full cast (other jobs keep their fingerprints)."""
    fields = {"voice": segment.voice, "text": segment.text}
    return fields if segment.speaker is None else {**fields, "speaker": segment.speaker}


def with_notifications(
    request: JobRequest,
    settings: NotifySettings,
    webhook: object = None,
    audiobookshelf: object = False,
    allow_any_webhook: bool = False,
) -> JobRequest:
    """`request` with its end notified: a webhook URL (checked: http(s), a public address unless
    `settings.allow_networks` opens it, or anything with `allow_any_webhook`, for the operator's own
    command line) and the upload of its .m4b to the server's Audiobookshelf.

    Raises:
        InvalidRequest: a bad or refused webhook; audiobookshelf asked for where it cannot be done.
    """
    from barkserve.jobs.notify import ANY_ADDRESS, check_audiobookshelf, check_webhook_url

    url = None
    if webhook is not None:
        url = check_webhook_url(webhook, ANY_ADDRESS if allow_any_webhook else settings.allow_networks)
    output = request.book.get("output") if request.book else None
    upload = "audiobookshelf" if check_audiobookshelf(settings, audiobookshelf, output) else None
    return replace(request, webhook=url, upload=upload)


def submit_job(
    store: JobStore,
    request: JobRequest,
    idempotency_key: str | None = None,
    seed: int | None = None,
    tenant: str | None = None,
) -> tuple[Job, bool]:
    """Store a queued job (or find the one with the same `idempotency_key`); True when created.

    The seed is fixed at submission: the options' seed, else `seed`, else a random one, so every
    resumption of the job makes the same audio. `tenant` is the API key that owns the job; its
    Idempotency-Keys are its own (another key's same key is another job).
    """
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_KEY_CHARS:
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters")
    if idempotency_key is not None and tenant is not None:
        # The stored key is unique across all jobs: a hash keeps the tenant's prefix within its length.
        idempotency_key = f"{tenant}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
    fixed = request.options.seed if request.options.seed is not None else seed
    if fixed is None:
        fixed = secrets.randbelow(2**31)
    stored = {**request.fields, "options": {**request.options.to_dict(), "seed": fixed}}
    return store.create(
        idempotency_key=idempotency_key,
        request_hash=request.fingerprint,
        book=request.book,
        tenant=tenant,
        warnings=list(request.warnings) or None,
        **stored,
    )
