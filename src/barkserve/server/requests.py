"""Reading requests: JSON bodies, multipart job uploads, form values and query integers, one way each."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from barkserve.books import BOOK_TYPES
from barkserve.captions import CAPTION_FORMATS
from barkserve.errors import InvalidRequest, UnsupportedBook
from barkserve.markup import Lexicon
from barkserve.options import SynthesisOptions
from barkserve.server.access import access, current
from barkserve.server.state import state

# Fields of /synthesize and /jobs besides the synthesis options.
REQUEST_FIELDS = ("text", "voice_preset", "model", "format")
OPTION_FIELDS = tuple(SynthesisOptions.__dataclass_fields__)
UPLOAD_TYPES = BOOK_TYPES
# Fields of /jobs besides REQUEST_FIELDS and the options (a job always has sentence captions).
JOB_FIELDS = ("caption_words", "webhook", "audiobookshelf")
# Form fields of a POST /jobs book upload besides `file`, the options and REQUEST_FIELDS but `text`.
BOOK_FIELDS = ("output", "chapters", "chapter_voices", "cast")
UPLOAD_FIELDS = tuple(f for f in REQUEST_FIELDS if f != "text") + OPTION_FIELDS + JOB_FIELDS + BOOK_FIELDS
# POST /v1/audio/speech: OpenAI's own fields (Bark's options come on top) and formats.
OPENAI_FIELDS = ("model", "input", "voice", "response_format", "speed", "stream_format")
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
# The captions extension of /synthesize and /v1/audio/speech: a caption file format (or none), and word timing.
CAPTION_FIELDS = ("captions", "caption_words")
CAPTION_CHOICES = ("none", *CAPTION_FORMATS)
# /v1/audio/speech's timestamps: words and sentences with their times, streamed or in a JSON answer.
TIMESTAMP_FIELDS = ("timestamps",)
# Integers beyond this are no valid value of any field (the largest, `seed`, is below 2**63); Python
# would read them, then fail to turn them into floats when a field is checked.
MAX_JSON_DIGITS = 20


def json_object(limit: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 (413) that says what is wrong with it."""
    limit = limit or state().config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    if not request.is_json:
        raise InvalidRequest("send the request body as JSON with the header 'Content-Type: application/json'")
    body = load_json(request.get_data(cache=True), "the request body")
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object; got {type(body).__name__}")
    return body


def load_json(data: str | bytes, what: str) -> Any:
    """Strict JSON: NaN, Infinity, numbers that overflow a float and integers over 20 digits are a 400.

    `what` names the JSON in the error message ("the request body", "form field 'speed'").
    """
    try:
        return json.loads(data, parse_constant=_json_constant, parse_float=_json_float, parse_int=_json_int)
    except RecursionError as exc:  # the decoder's own limit: far deeper than any request needs
        raise InvalidRequest(f"{what} is JSON nested too deeply; send a flat JSON object") from exc
    except ValueError as exc:  # includes bytes that are not UTF-8
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from exc


def _json_constant(name: str) -> Any:
    raise InvalidRequest(f"numbers must be finite: {name} is not JSON")


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(f"number {text[:40]!r} is too large; numbers must be finite")
    return value


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise InvalidRequest(f"integer {text[:24]}... is too large; no field takes over {MAX_JSON_DIGITS} digits")
    return int(text)


def check_fields(body: dict[str, Any], accepted: tuple[str, ...]) -> None:
    """Unknown fields are an error, never silently ignored."""
    unknown = sorted(set(body) - set(accepted))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {unknown}; accepted: {list(accepted)}")


def options_of(body: dict[str, Any]) -> dict[str, Any]:
    """The synthesis-option fields of a checked body; its `lexicon` over the calling key's (PUT /lexicon)."""
    options = {k: body[k] for k in OPTION_FIELDS if k in body}
    stored = access().keys.lexicon(current().tenant)
    if stored:
        own = Lexicon.from_value(stored, source="key") or Lexicon()
        options["lexicon"] = own.merged(Lexicon.from_value(options.get("lexicon")))
    return options


@dataclass(frozen=True)
class CaptionRequest:
    """Captions a request asked for: the file format, and whether words are timed too."""

    fmt: str  # srt, vtt or json
    words: bool = False


def caption_request(body: dict[str, Any]) -> CaptionRequest | None:
    """The checked `captions` and `caption_words` fields of a body; None when no captions are asked for."""
    fmt = body.get("captions", "none")
    if not isinstance(fmt, str) or fmt not in CAPTION_CHOICES:
        raise InvalidRequest(f"captions must be one of {list(CAPTION_CHOICES)}; got {fmt!r}")
    words = body.get("caption_words", False)
    if not isinstance(words, bool):
        raise InvalidRequest(f"caption_words must be true or false; got {words!r}")
    if fmt == "none":
        if words:
            raise InvalidRequest("caption_words needs captions: set captions to 'srt', 'vtt' or 'json'")
        return None
    return CaptionRequest(fmt, words)


@dataclass(frozen=True)
class Upload:
    """A book file sent to POST /jobs."""

    filename: str
    data: bytes = field(repr=False)


def job_request() -> tuple[dict[str, Any], Upload | None]:
    """The job's fields from JSON; or, from a multipart upload, the form fields and the book file (`file`)."""
    limit = state().config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    if not request.files:
        return json_object(limit=limit), None
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidRequest(f"send the book as a multipart field named 'file' ({', '.join(UPLOAD_TYPES)})")
    if Path(upload.filename).suffix.lower() not in UPLOAD_TYPES:
        raise UnsupportedBook(f"upload a book file ({', '.join(UPLOAD_TYPES)}); got {upload.filename!r}")
    body = {key: form_value(key, value) for key, value in request.form.items()}
    return body, Upload(upload.filename, upload.read())


def form_value(key: str, value: str) -> Any:
    """Form fields are strings; numbers and booleans are read as JSON would give them."""
    if key == "voice_preset":
        number = ascii_int(value)
        return value if number is None else number
    if key == "webhook":
        return value
    if key in OPTION_FIELDS or key in JOB_FIELDS:
        return load_json(value, f"form field {key!r} (a number or true/false)")
    if key == "chapter_voices":
        return load_json(value, 'form field \'chapter_voices\' (a JSON object like {"2": "v2/en_speaker_1"})')
    if key == "cast" and value.strip() not in ("auto", ""):
        return load_json(value, "form field 'cast' (\"auto\" or a cast sheet as JSON, as cast.json)")
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A query-string integer in [low, high], or a 400 that says so."""
    raw = request.args.get(name)
    if raw is None:
        return default
    number = ascii_int(raw)
    if number is None or not low <= number <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}; got {raw[:40]!r}")
    return number


def ascii_int(text: str) -> int | None:
    """`text` as a non-negative integer if it is 1-20 ASCII digits, else None.

    `str.isdigit` also accepts '²' and other digits `int()` refuses, and `int()` refuses over
    4,300 digits: both would otherwise be a 500.
    """
    if text.isascii() and text.isdigit() and len(text) <= MAX_JSON_DIGITS:
        return int(text)
    return None
