"""The OpenAPI 3.1 document of an app: each route's body, parameters and answers, statuses included."""

from __future__ import annotations

import inspect
import re
from typing import Any

from flask import Flask

from barkserve.audio.encode import FORMATS
from barkserve.captions import CAPTION_FORMATS
from barkserve.captions import MIMETYPES as CAPTION_MIMETYPES
from barkserve.config import ServerConfig
from barkserve.jobs.store import STATES
from barkserve.jobs.submit import BOOK_OUTPUTS
from barkserve.server.access import ANY_KEY, PUBLIC, required_scope
from barkserve.server.openapi_schemas import (
    LEXICON,
    batch_schema,
    formats,
    openai_schema,
    request_schema,
    upload_schema,
)
from barkserve.server.requests import OPENAI_FORMATS
from barkserve.server.voice_preview import PREVIEW_FORMATS
from barkserve.voices import LANGUAGES

JSON = "application/json"
BEARER = "bearer"
ERROR = {"$ref": "#/components/schemas/Error"}
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad request (or a Host the server does not answer to)",
    401: "No API key, or a wrong or revoked one",
    403: "Refused: a key without the route's scope, a cross-site page, or a protected voice",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    415: "Unsupported audio or book format",
    422: "No speech in the audio",
    429: "The key is over its requests per minute or audio seconds per day; see Retry-After",
    500: "Internal error",
    503: "Model or storage unavailable, or the engine's queue is full (see Retry-After)",
    507: "Output storage full",
}


def obj(required: str = "", **properties: Any) -> dict[str, Any]:
    """An object schema; `required` names its always-present keys, space-separated."""
    return {"type": "object", "required": required.split(), "properties": properties}


STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
OPT_STR, OPT_INT, OPT_NUM = {"type": ["string", "null"]}, {"type": ["integer", "null"]}, {"type": ["number", "null"]}
STRS = {"type": "array", "items": STR}
MODEL_STATE = obj("state", state={"enum": ["not_loaded", "loaded", "unavailable"]}, device=STR, dtype=STR, error=STR)
HEALTH = obj(
    "status default_model models pid",
    status={"enum": ["ok", "unavailable"]},
    default_model=STR,
    models={"type": "object", "additionalProperties": MODEL_STATE},
    pid=INT,
)
# A job's notification (jobs/notify.py): a signed webhook POST or an Audiobookshelf upload, and its attempts.
DELIVERY = obj(
    "id kind event url state attempts next_attempt_at log",
    id=STR,
    kind={"enum": ["webhook", "audiobookshelf"]},
    event={"enum": ["job.succeeded", "job.failed", "job.cancelled"]},
    url=OPT_STR,
    state={"enum": ["pending", "delivered", "failed"]},
    attempts=INT,
    next_attempt_at=OPT_STR,
    log={"type": "array", "items": {"type": "object"}},
)
JOB = obj(
    "id state chunks_done chunks_total audio_sec eta_sec error voice model format seed created_at finished_at "
    "location audio_url caption_words warnings webhook audiobookshelf",
    id=STR,
    state={"enum": list(STATES)},
    chunks_done=INT,
    chunks_total=OPT_INT,
    audio_sec=NUM,
    eta_sec=OPT_NUM,
    error=OPT_STR,
    voice=STR,
    model=STR,
    format=STR,
    seed=OPT_INT,
    created_at=STR,
    finished_at=OPT_STR,
    location=STR,
    audio_url=OPT_STR,
    caption_words=BOOL,
    warnings={"type": "array", "items": STR},
    webhook=OPT_STR,
    audiobookshelf=BOOL,
    # GET /jobs/{id} only: the job's notifications (webhook, Audiobookshelf upload) and their attempts.
    deliveries={"type": "array", "items": DELIVERY},
    # Book jobs only: the book, and progress per chapter (chunks_total is null until the job is planned).
    book=obj("title author output", title=STR, author=OPT_STR, output={"enum": list(BOOK_OUTPUTS)}),
    chapters={
        "type": "array",
        "items": obj(
            "chapter title chunks_done chunks_total", chapter=INT, title=STR, chunks_done=INT, chunks_total=OPT_INT
        ),
    },
)
# A book's plan (jobs/preview.py): what POST /books/plan answers and `barkserve book --plan --json` prints.
BOOK_PLAN = obj(
    "title author language voice chapters chunks estimated_seconds warnings",
    title=STR,
    author=OPT_STR,
    language=OPT_STR,
    voice=STR,
    chapters={
        "type": "array",
        "items": obj(
            "number title language voices words chunks estimated_seconds first_words flags",
            number=INT,
            title=STR,
            language=OPT_STR,
            voices=STRS,
            words=INT,
            chunks=INT,
            estimated_seconds=NUM,
            first_words=STR,
            flags=STRS,
        ),
    },
    chunks=INT,
    estimated_seconds=NUM,
    warnings=STRS,
    # With a full cast: the cast sheet (books/cast_sheet.py), to edit and send back as `cast`.
    cast={"type": ["object", "null"]},
)
BOOK_FILES = {
    t: {"schema": {"type": "string", "format": "binary"}}
    for t in ("audio/mp4", "application/zip", "application/epub+zip")
}
CUE = obj("start end text words", start=NUM, end=NUM, text=STR, words={"type": "array"})
CAPTION_ANSWERS = {
    CAPTION_MIMETYPES["srt"]: {"schema": STR},
    CAPTION_MIMETYPES["vtt"]: {"schema": STR},
    CAPTION_MIMETYPES["json"]: {
        "schema": obj(
            "format version cues",
            format=STR,
            version=INT,
            cues={"type": "array", "items": CUE},
            warnings={"type": "array", "items": STR},  # where word timing fell back to sentence timing
        )
    },
}
SYNTHESIS = obj(
    "message filename text processing_time_sec processing_time_min url duration_sec sample_rate "
    "voice_preset model seed format chunks",
    message=STR,
    filename=STR,
    text=STR,
    processing_time_sec=NUM,
    processing_time_min=NUM,
    url=STR,
    duration_sec=NUM,
    sample_rate=INT,
    voice_preset=STR,
    model=STR,
    seed=INT,
    format=STR,
    chunks=INT,
    qc={"type": "array", "items": {"type": "object"}},
    # Only when the request asked for captions.
    captions=obj(
        "format filename url words cues warnings",
        format={"enum": list(CAPTION_FORMATS)},
        filename=STR,
        url=STR,
        words=BOOL,
        cues=INT,
        warnings={"type": "array", "items": STR},
    ),
)
# A dry run (POST /v1/audio/speech/plan, POST /synthesize?dry_run=1): server/planning.py's answer.
PLAN = obj(
    "model voice seed ssml normalize text spoken_text chunks pauses substitutions estimated_seconds",
    model=STR,
    voice=STR,
    seed=INT,
    ssml=BOOL,
    normalize=BOOL,
    text=STR,
    spoken_text=STR,
    chunks={
        "type": "array",
        "items": obj(
            "index text said voice speed tokens pause_before_sec pause_after_sec marked_pause",
            index=INT,
            text=STR,
            said=STR,
            voice=STR,
            speed=NUM,
            tokens=INT,
            pause_before_sec=NUM,
            pause_after_sec=NUM,
            marked_pause=BOOL,
        ),
    },
    pauses={"type": "array", "items": obj("after_chunk seconds", after_chunk=OPT_INT, seconds=NUM)},
    substitutions={
        "type": "array",
        "items": obj("chunk original said source", chunk=INT, original=STR, said=STR, source=STR),
    },
    estimated_seconds=NUM,
)
LEXICON_ANSWER = obj("lexicon entries server_entries", lexicon={"type": "object"}, entries=INT, server_entries=INT)
PROGRESS = obj(
    "id chunks_total chunks_done audio_sec underrun_sec stalls started_at finished_at error",
    id=STR,
    chunks_total=INT,
    chunks_done=INT,
    audio_sec=NUM,
    underrun_sec=NUM,
    stalls=INT,
    started_at=NUM,
    finished_at=OPT_NUM,
    error=OPT_STR,
)

# Caption files (srt, vtt: text; json: the object `captions.formats` documents) served beside the audio.
CAPTION_FILES = {m: {"schema": {"type": "object"} if m == JSON else STR} for m in CAPTION_MIMETYPES.values()}

# stream_format "sse" on /v1/audio/speech: OpenAI's events, each a `data:` line of JSON, instead of the audio.
EVENTS = {"text/event-stream": {"schema": obj("data", data=STR)}}
TIMED = {"type": "array", "items": obj("text start end", text=STR, start=NUM, end=NUM)}
USAGE = obj("input_tokens output_tokens total_tokens", input_tokens=INT, output_tokens=INT, total_tokens=INT)
# `timestamps: true` without streaming: the audio (base64) and its words and sentences.
TIMESTAMPED = obj(
    "audio response_format duration_sec seed chunks words sentences warnings usage",
    audio=STR,
    response_format=STR,
    duration_sec=NUM,
    seed=INT,
    chunks=INT,
    words=TIMED,
    sentences=TIMED,
    warnings=STRS,
    usage=USAGE,
    captions={"type": "object"},
)
BATCH_ITEM = obj(
    "index",
    index=INT,
    audio=STR,
    response_format=STR,
    duration_sec=NUM,
    seed=INT,
    chunks=INT,
    usage=USAGE,
    words=TIMED,
    sentences=TIMED,
    warnings=STRS,
    error=obj("code message", code=STR, message=STR),
)
BATCH = obj(
    "object data failed duration_sec usage",
    object=STR,
    data={"type": "array", "items": BATCH_ITEM},
    failed=INT,
    duration_sec=NUM,
    usage=USAGE,
)


def answers(ok: dict[int, Any], *errors: int, method: str = "GET") -> dict[str, Any]:
    """Responses: `ok` maps a status to its content; every operation may also answer 400 and 500."""
    extra = {403, 413} if method in ("POST", "DELETE") else set()
    out = {str(s): {"description": STATUS_TEXT[s], "content": content} for s, content in ok.items()}
    for status in sorted({400, 500, *errors, *extra}):
        out[str(status)] = {"description": STATUS_TEXT[status], "content": {JSON: {"schema": ERROR}}}
    return out


def json_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def audio_of(names: Any) -> dict[str, Any]:
    """Content entries for the audio mimetypes of the format names."""
    return {FORMATS[n].mimetype: {"schema": {"type": "string", "format": "binary"}} for n in names}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def body(schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}, **more}}


def operations(config: ServerConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """The spec of each (Flask rule, method); the route's summary comes from its view's docstring."""
    synth = request_schema(config, config.max_text_chars, "wav", captions=True)
    job = request_schema(config, config.max_job_chars, "mp3", job=True)
    upload = upload_schema(job)
    voice_form = obj(
        "file name",
        file={"type": "string", "format": "binary"},
        name=STR,
        consent={"enum": ["true", "false"], "description": "Required 'true' for uploads from beyond loopback."},
        ref_text={"type": "string", "maxLength": 2000, "description": "What the recording says."},
        description={"type": "string", "maxLength": 500},
        language={"enum": list(LANGUAGES), "description": "The language the voice speaks."},
    )
    jobs_page = obj(
        "jobs total limit offset next_offset",
        jobs={"type": "array", "items": JOB},
        total=INT,
        limit=INT,
        offset=INT,
        next_offset=OPT_INT,
    )
    chunk = obj(
        "index text done attempts samples",
        index=INT,
        text=STR,
        done=BOOL,
        attempts=INT,
        samples=OPT_INT,
        qc={"type": "object"},
    )
    # An adapter's row also names its model and itself; its state is its model's.
    model_row = {"allOf": [MODEL_STATE, obj("id aliases", id=STR, aliases={"type": "array", "items": STR},
                                            base_model=STR, adapter=STR)]}  # fmt: skip
    openai_model = obj("id object created owned_by", id=STR, object=STR, created=INT, owned_by=STR)
    voice_entry = obj(
        "id name preset kind language",
        id=STR,
        name=STR,
        preset=OPT_STR,
        kind={"enum": ["openai", "preset", "custom"]},
        language=OPT_STR,
        description=OPT_STR,
        consent={"type": ["boolean", "null"]},
        created_at=OPT_STR,
    )
    fmt_query = query("format", {"enum": formats()}, "Re-encode the audio to this format.")
    return {
        ("/health", "GET"): {"responses": answers({200: json_of(HEALTH), 503: json_of(HEALTH)})},
        ("/models", "GET"): {
            "responses": answers(
                {200: json_of(obj("default models", default=STR, models={"type": "array", "items": model_row}))}
            )
        },
        ("/synthesize", "POST"): {
            "query": [
                query(
                    "dry_run",
                    {"enum": ["1", "0", "true", "false"]},
                    "1 or true: answer the plan (chunks, voices, pauses, respellings) as POST /v1/audio/speech/plan "
                    "does, without generating or writing anything.",
                )
            ],
            "requestBody": body(synth),
            "responses": answers({200: json_of({"anyOf": [SYNTHESIS, PLAN]})}, 404, 409, 422, 503, 507, method="POST"),
        },
        ("/audio/<path:filename>", "GET"): {"responses": answers({200: {**audio_of(FORMATS), **CAPTION_FILES}}, 404)},
        ("/voices", "GET"): {
            "query": [query("model", STR, "The model whose presets to list (default: the server's).")],
            "responses": answers(
                {
                    200: json_of(
                        obj(
                            "model default numbers presets custom",
                            model=STR,
                            default=STR,
                            numbers={"type": "object", "additionalProperties": STR},
                            presets={"type": "array", "items": STR},
                            custom={"type": "array", "items": STR},
                        )
                    )
                },
                503,
            ),
        },
        ("/voices", "POST"): {
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": voice_form}}},
            "responses": answers(
                {201: json_of(obj("voice", voice={"type": "object"}))}, 409, 415, 422, 503, 507, method="POST"
            ),
        },
        ("/voices/<path:name>", "DELETE"): {
            "responses": answers({200: json_of(obj("deleted", deleted=STR))}, 404, method="DELETE")
        },
        ("/voices/<path:name>/preview", "GET"): {
            "query": [
                query("model", STR, "The model to speak with (default: the server's)."),
                query("format", {"enum": list(PREVIEW_FORMATS)}, "mp3 (default), wav, opus or flac."),
            ],
            "responses": answers({200: audio_of(PREVIEW_FORMATS)}, 404, 422, 503, 507),
        },
        ("/v1/audio/speech", "POST"): {
            "requestBody": body(openai_schema(config)),
            "responses": answers(
                {200: {**audio_of(OPENAI_FORMATS), **EVENTS, **json_of(TIMESTAMPED)}}, 404, 422, 503, method="POST"
            ),
        },
        ("/v1/audio/speech/batch", "POST"): {
            "requestBody": body(batch_schema(config)),
            "responses": answers({200: json_of(BATCH)}, 404, 503, method="POST"),
        },
        ("/v1/audio/speech/<sid>", "GET"): {"responses": answers({200: json_of(PROGRESS)}, 404)},
        ("/v1/audio/speech/plan", "POST"): {
            "requestBody": body(openai_schema(config)),
            "responses": answers({200: json_of(PLAN)}, 404, 503, method="POST"),
        },
        ("/lexicon", "GET"): {"responses": answers({200: json_of(LEXICON_ANSWER)}, 503)},
        ("/lexicon", "PUT"): {
            "requestBody": body(obj("lexicon", lexicon=LEXICON)),
            "responses": answers({200: json_of(LEXICON_ANSWER)}, 503, method="PUT"),
        },
        ("/lexicon", "DELETE"): {
            "responses": answers({200: json_of(obj("deleted", deleted=BOOL))}, 503, method="DELETE")
        },
        ("/v1/audio/voices", "GET"): {
            "responses": answers(
                {200: json_of(obj("model voices", model=STR, voices={"type": "array", "items": voice_entry}))}
            )
        },
        ("/v1/models", "GET"): {
            "responses": answers(
                {200: json_of(obj("object data", object=STR, data={"type": "array", "items": openai_model}))}
            )
        },
        ("/jobs", "POST"): {
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": STR}],
            "requestBody": body(job, **{"multipart/form-data": {"schema": upload}}),
            "responses": answers({200: json_of(JOB), 202: json_of(JOB)}, 409, 415, 503, 507, method="POST"),
        },
        ("/books/plan", "POST"): {
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
            "responses": answers({200: json_of(BOOK_PLAN)}, 415, 503, method="POST"),
        },
        ("/jobs", "GET"): {
            "query": [
                query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size (default 50)."),
                query("offset", {"type": "integer", "minimum": 0}, "Jobs to skip."),
                query("state", {"enum": list(STATES)}, "Only jobs in this state."),
            ],
            "responses": answers({200: json_of(jobs_page)}, 503),
        },
        ("/jobs/<job_id>", "GET"): {"responses": answers({200: json_of(JOB)}, 404, 503)},
        ("/jobs/<job_id>", "DELETE"): {"responses": answers({200: json_of(JOB)}, 404, 409, 503, method="DELETE")},
        ("/jobs/<job_id>/deliveries/retry", "POST"): {
            "responses": answers({200: json_of(JOB)}, 404, 409, 503, method="POST")
        },
        ("/webhooks/secret", "GET"): {
            "responses": answers({200: json_of(obj("secret scheme", secret=STR, scheme=STR))}, 503)
        },
        ("/jobs/<job_id>/chunks", "GET"): {
            "responses": answers({200: json_of(obj("chunks", chunks={"type": "array", "items": chunk}))}, 404, 503)
        },
        ("/jobs/<job_id>/audio", "GET"): {
            "query": [fmt_query],
            "responses": answers({200: {**audio_of(FORMATS), **BOOK_FILES}}, 404, 409, 503, 507),
        },
        ("/jobs/<job_id>/captions", "GET"): {
            "query": [
                query("format", {"enum": list(CAPTION_FORMATS)}, "srt (default), vtt or json."),
                query(
                    "chapter",
                    {"type": "integer", "minimum": 1},
                    "A book job's chapter (from 1): its captions alone, timed from the chapter's start "
                    "(400 for a text job or a chapter the book does not have).",
                ),
            ],
            "responses": answers({200: CAPTION_ANSWERS}, 404, 409, 503),
        },
        ("/metrics", "GET"): {"responses": answers({200: {"text/plain": {"schema": STR}}})},
        ("/openapi.json", "GET"): {"responses": answers({200: json_of({"type": "object"})})},
        ("/docs", "GET"): {"responses": answers({200: {"text/html": {"schema": STR}}})},
        ("/", "GET"): {"responses": answers({200: {"text/html": {"schema": STR}}})},
        ("/web/<path:filename>", "GET"): {
            "responses": answers({200: {"text/css": {"schema": STR}, "text/javascript": {"schema": STR}}}, 404)
        },
    }


def rule_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/jobs/<job_id>` -> `/jobs/{job_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def build(app: Flask, config: ServerConfig) -> dict[str, Any]:
    """The document: one operation per (rule, method) that `operations` describes."""
    specs = operations(config)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            spec = specs.get((rule.rule, method))
            if spec is None:
                continue  # tests/server/test_openapi.py fails on an undocumented route
            view = app.view_functions[rule.endpoint]
            summary = (inspect.getdoc(view) or rule.endpoint).splitlines()[0]
            params = [{"name": a, "in": "path", "required": True, "schema": STR} for a in sorted(rule.arguments)]
            params += spec.get("query", []) + spec.get("parameters", [])
            operation = {
                "operationId": rule.endpoint.replace(".", "_"),
                "summary": summary,
                **{k: v for k, v in spec.items() if k not in ("query", "parameters")},
            }
            if params:
                operation["parameters"] = params
            secure(operation, rule.endpoint, config)
            paths.setdefault(rule_path(rule.rule), {})[method.lower()] = operation
    error = obj(
        "error",
        error=obj(
            "code message type param",
            code=STR,
            message=STR,
            type={"enum": ["invalid_request_error", "server_error"]},
            param=OPT_STR,
        ),
    )
    info = {
        "title": "barkserve",
        "version": _version(),
        "description": "Text to speech with Suno's Bark. "
        'Every error answers {"error": {code, message, type, param}} with a status the operation lists.',
    }
    components: dict[str, Any] = {"schemas": {"Error": error}}
    if config.auth != "off":
        components["securitySchemes"] = {
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from `barkserve keys create`, as 'Authorization: Bearer <key>'. "
                "Enforced when the server listens beyond loopback, once any key exists, or with auth=on.",
            }
        }
    return {"openapi": "3.1.0", "info": info, "paths": paths, "components": components}


def secure(operation: dict[str, Any], endpoint: str, config: ServerConfig) -> None:
    """The operation's security requirement, and the 401/403/429/503 answers keys and limits can cause."""
    scope = required_scope(endpoint, config)
    if config.auth == "off" or scope == PUBLIC:
        operation["security"] = []
        return
    operation["security"] = [{BEARER: []}]
    needs = "any valid API key" if scope == ANY_KEY else f"an API key with the '{scope}' scope (or 'admin')"
    operation["description"] = f"Needs {needs}."
    statuses = [401, 403, 429, 503]  # 503: the queue bound (synthesis), or a shared limits store that is down
    retry = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": INT}}
    for status in statuses:
        answer = {"description": STATUS_TEXT[status], "content": {JSON: {"schema": ERROR}}}
        if status in (429, 503):
            answer["headers"] = retry
        operation["responses"].setdefault(str(status), answer)
    operation["responses"] = dict(sorted(operation["responses"].items()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("barkserve")
    except PackageNotFoundError:  # a source tree on PYTHONPATH without an install
        return "0+unknown"
