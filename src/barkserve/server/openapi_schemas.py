"""JSON Schemas of request bodies, built from the dataclasses and field lists the views validate with."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any

from barkserve.audio.encode import FORMATS, can_encode
from barkserve.books import BOOK_TYPES
from barkserve.config import ServerConfig
from barkserve.jobs.submit import BOOK_OUTPUTS
from barkserve.markup.lexicon import MAX_ENTRIES, MAX_SAID_CHARS, Lexicon
from barkserve.options import MAX_DURATION_SEC, MAX_SEED, SynthesisOptions
from barkserve.qc import MAX_TRIES, QualityCheck
from barkserve.server.requests import (
    BOOK_FIELDS,
    CAPTION_CHOICES,
    CAPTION_FIELDS,
    JOB_FIELDS,
    OPENAI_FIELDS,
    OPENAI_FORMATS,
    REQUEST_FIELDS,
    TIMESTAMP_FIELDS,
    UPLOAD_FIELDS,
)
from barkserve.server.speech_batch import MAX_ITEMS

# The ranges each option's __post_init__ enforces (tests/server/test_openapi.py checks both agree).
# A new option gets its type and comment from the dataclass without an entry here.
BOUNDS: dict[str, dict[str, Any]] = {
    "text_temp": {"minimum": 0, "maximum": 5},
    "waveform_temp": {"minimum": 0, "maximum": 5},
    "seed": {"minimum": 0, "maximum": MAX_SEED},
    "min_eos_p": {"exclusiveMinimum": 0, "maximum": 1},
    "max_duration_sec": {"exclusiveMinimum": 0, "maximum": MAX_DURATION_SEC},
    "sentence_pause_sec": {"minimum": 0, "maximum": 5},
    "speed": {"minimum": 0.25, "maximum": 4.0},
    "max_error": {"minimum": 0, "maximum": 10},
    "min_similarity": {"minimum": -1, "maximum": 1},
    "tries": {"minimum": 1, "maximum": MAX_TRIES},
}
# What the OpenAI route's own fields mean (its FIELDS tuple says which exist).
OPENAI_SCHEMAS: dict[str, dict[str, Any]] = {
    "model": {"type": "string", "description": "tts-1 (the default model), tts-1-hd (suno/bark) or an allowed model"},
    "input": {"type": "string", "description": "The text to speak."},
    "voice": {
        "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 9}],
        "description": "An OpenAI voice name (mapped to a Bark preset) or any Bark voice.",
    },
    "response_format": {"enum": list(OPENAI_FORMATS), "default": "mp3"},
    "speed": {"type": "number", **BOUNDS["speed"], "default": 1.0},
    "stream_format": {"enum": ["audio", "sse"], "default": "audio"},
}

# The captions extension (its CAPTION_FIELDS), on /synthesize and /v1/audio/speech.
CAPTION_SCHEMAS: dict[str, dict[str, Any]] = {
    "captions": {
        "enum": list(CAPTION_CHOICES),
        "default": "none",
        "description": "Also write captions of the speech in this format (sentence cues in the original text); "
        "/synthesize answers with their filename and url, /v1/audio/speech sends their url in the "
        "X-Captions-Url header (and in the done event of an sse stream).",
    },
    "caption_words": {
        "type": "boolean",
        "default": False,
        "description": "Time each word too (CTC alignment with the server's align_model); needs captions.",
    },
}

# What the fields of /jobs (JSON and book uploads) beside the /synthesize ones mean (JOB_FIELDS says which exist).
JOB_SCHEMAS: dict[str, dict[str, Any]] = {
    "caption_words": {
        "type": "boolean",
        "default": False,
        "description": "Time each word of the job's captions too (CTC alignment with the server's align_model, "
        "when the audio is assembled); a 503 aligner_unavailable at submission when it cannot be loaded. Where "
        "alignment fails the captions keep sentence timing and the job's `warnings` say where.",
    },
    "webhook": {
        "type": "string",
        "maxLength": 2048,
        "description": "An http(s) URL that gets a signed JSON POST when the job succeeds, fails or is "
        "cancelled (Standard Webhooks headers; the key's secret is at GET /webhooks/secret), retried with "
        "backoff. Private, loopback and reserved addresses are refused (400) unless the server's "
        "webhook_allow_networks opens them.",
    },
    "audiobookshelf": {
        "type": "boolean",
        "default": False,
        "description": "Upload the finished .m4b to the server's Audiobookshelf (book jobs with output m4b; "
        "a 400 when the server has none). A failed upload leaves the job succeeded, is recorded in its "
        "`deliveries` and is retried with POST /jobs/{id}/deliveries/retry.",
    },
}

# What a book upload's own form fields mean (BOOK_FIELDS says which exist).
BOOK_SCHEMAS: dict[str, dict[str, Any]] = {
    "output": {
        "enum": list(BOOK_OUTPUTS),
        "description": "m4b: an audiobook with chapter marks, title, author and cover (the default, but "
        "for .txt and .md: single); zip: a file per chapter in `format`; single: the whole book as one file; "
        "epub3: a read-along EPUB 3 (the book's pages, each chapter's MP3, a Media Overlay per page)",
    },
    "chapters": {"type": "string", "description": "Only these chapters, numbered from 1: '3-5' or '1,4,7-9'"},
    "chapter_voices": {
        "type": "string",
        "contentMediaType": "application/json",
        "description": 'A JSON object of chapter number -> voice, e.g. {"2": "v2/en_speaker_1"}',
    },
    "cast": {
        "type": "string",
        "description": "A full cast: 'auto' (each character's quotes in a voice of their own, chosen by the "
        "book's language and their gender) or a cast sheet as JSON (the plan's `cast`, edited)",
    },
}


# A pronunciation lexicon (barkserve.markup.lexicon): language -> word -> respelling, or word -> respelling.
RESPELLING = {"type": "string", "minLength": 1, "maxLength": MAX_SAID_CHARS}
LEXICON: dict[str, Any] = {
    "type": "object",
    "description": 'Respellings of whole words: {"en": {"Nguyen": "win"}} per language ("*": every language), or '
    '{"Nguyen": "win"} for every language. A lower-case word matches in any case, one with a capital only as '
    "written; a respelling must not contain a word of the lexicon (it is applied once).",
    "maxProperties": MAX_ENTRIES,
    "additionalProperties": {
        "anyOf": [RESPELLING, {"type": "object", "maxProperties": MAX_ENTRIES, "additionalProperties": RESPELLING}]
    },
}
# The markup options on /v1/audio/speech (on /synthesize and /jobs they come with the other options).
MARKUP_FIELDS = ("ssml", "normalize", "lexicon")


def field_comments(cls: type) -> dict[str, str]:
    """Each dataclass field's `#` comment lines, joined: the field's documentation in the source."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        match = re.match(r"(\w+)\s*:", text)
        if text.startswith("#"):
            pending.append(text.lstrip("#").strip())
        elif match and pending:
            comments[match.group(1)] = " ".join(pending)
            pending = []
        else:
            pending = []
    return comments


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of a field's Python type (numbers, booleans, strings, dataclasses, `X | None`)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [type_schema(a) for a in args]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if hint is type(None):
        return {"type": "null"}
    if hint is Lexicon:
        return dict(LEXICON)
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)  # type: ignore[arg-type]
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return {"type": names[hint]}


def dataclass_schema(cls: type) -> dict[str, Any]:
    """An object schema of a dataclass's fields: type, default, range and the source comment of each."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        schema = with_bounds(type_schema(hints[f.name]), f.name)
        if f.default is not dataclasses.MISSING and not dataclasses.is_dataclass(f.default):
            schema["default"] = f.default
        if f.name in comments:
            schema["description"] = comments[f.name]
        properties[f.name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def with_bounds(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """`schema` with the field's BOUNDS added to its number or integer branch."""
    if name not in BOUNDS:
        return schema
    if "anyOf" in schema:
        branches = [{**b, **BOUNDS[name]} if b.get("type") in ("number", "integer") else b for b in schema["anyOf"]]
        return {**schema, "anyOf": branches}
    return {**schema, **BOUNDS[name]}


def option_schemas() -> dict[str, Any]:
    """SynthesisOptions (and QualityCheck within it) as JSON Schema properties."""
    options: dict[str, Any] = dataclass_schema(SynthesisOptions)["properties"]
    # `qc` also takes true (the defaults) and false (off), as QualityCheck.from_value reads them.
    options["qc"] = {**options["qc"], "anyOf": [{"type": "boolean"}, {"type": "null"}, dataclass_schema(QualityCheck)]}
    return options


def request_schema(
    config: ServerConfig, max_chars: int, fmt_default: str, captions: bool = False, job: bool = False
) -> dict[str, Any]:
    """The JSON body of /synthesize and /jobs: REQUEST_FIELDS plus every synthesis option (plus the
    CAPTION_FIELDS with `captions`, the JOB_FIELDS with `job`)."""
    known = {
        "text": {"type": "string", "minLength": 1, "maxLength": max_chars, "description": "The text to speak."},
        "voice_preset": {
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string"}],
            "description": f"0-9 (v2/en_speaker_N), a preset or custom voice; default {config.default_voice}",
        },
        "model": {
            "type": "string",
            "description": f"One of {list(config.allowed_models)}, an alias, or an adapter GET /models lists",
        },
        "format": {"enum": formats(), "default": fmt_default},
    }
    properties = {name: known.get(name, {}) for name in REQUEST_FIELDS}
    extension = {name: CAPTION_SCHEMAS[name] for name in CAPTION_FIELDS} if captions else {}
    if job:
        extension |= {name: JOB_SCHEMAS[name] for name in JOB_FIELDS}
    return {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {**properties, **option_schemas(), **extension},
    }


def formats() -> list[str]:
    """The formats this server can encode."""
    return [name for name in FORMATS if can_encode(name)]


def openai_schema(config: ServerConfig) -> dict[str, Any]:
    """The JSON body of /v1/audio/speech, one property per name in the route's FIELDS, and the captions extension."""
    properties = {name: dict(OPENAI_SCHEMAS[name]) for name in OPENAI_FIELDS}
    properties.update({name: CAPTION_SCHEMAS[name] for name in CAPTION_FIELDS})
    properties.update({name: option_schemas()[name] for name in MARKUP_FIELDS})
    properties["input"]["maxLength"] = config.openai_max_input_chars
    properties.update({name: TIMESTAMPS_SCHEMA for name in TIMESTAMP_FIELDS})
    return {
        "type": "object",
        "required": ["model", "input", "voice"],
        "additionalProperties": False,
        "properties": properties,
    }


TIMESTAMPS_SCHEMA = {
    "type": "boolean",
    "description": "Words (when the server has an aligner) and sentences with their times: with stream_format "
    "'sse' a speech.audio.timestamps event before each chunk's audio, otherwise a JSON answer with the audio "
    "in base64.",
}


def batch_schema(config: ServerConfig) -> dict[str, Any]:
    """The JSON body of /v1/audio/speech/batch: 1-32 items, each /v1/audio/speech's body without streaming
    or caption files."""
    item = openai_schema(config)
    item["properties"] = {k: v for k, v in item["properties"].items() if k not in ("stream_format", *CAPTION_FIELDS)}
    items = {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": item}
    return {"type": "object", "required": ["items"], "additionalProperties": False, "properties": {"items": items}}


def upload_schema(job: dict[str, Any]) -> dict[str, Any]:
    """The multipart form of a POST /jobs book upload: `file` and UPLOAD_FIELDS (the job's fields but `text`)."""
    file = {
        "type": "string",
        "format": "binary",
        "description": f"The book: {', '.join(BOOK_TYPES)}, up to the max_book_bytes setting.",
    }
    fields = {name: BOOK_SCHEMAS[name] if name in BOOK_FIELDS else job["properties"][name] for name in UPLOAD_FIELDS}
    return {"type": "object", "required": ["file"], "properties": {"file": file, **fields}}
