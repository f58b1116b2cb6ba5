"""Reading requests: JSON bodies, multipart job uploads, form values and query integers, one way each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from barkserve.errors import InvalidRequest
from barkserve.options import SynthesisOptions
from barkserve.server.state import state
from barkserve.text import markdown_to_text

# Fields of /synthesize and /jobs besides the synthesis options.
REQUEST_FIELDS = ("text", "voice_preset", "model", "format")
OPTION_FIELDS = tuple(SynthesisOptions.__dataclass_fields__)
UPLOAD_TYPES = (".txt", ".md")


def json_object(limit: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 (413) that says what is wrong with it."""
    limit = limit or state().config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    if not request.is_json:
        raise InvalidRequest("send the request body as JSON with the header 'Content-Type: application/json'")
    try:
        body = json.loads(request.get_data(cache=True))
    except RecursionError as exc:  # the decoder's own limit: far deeper than any request needs
        raise InvalidRequest("the request body is JSON nested too deeply; send a flat JSON object") from exc
    except ValueError as exc:  # includes bytes that are not UTF-8
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object; got {type(body).__name__}")
    return body


def check_fields(body: dict[str, Any], accepted: tuple[str, ...]) -> None:
    """Unknown fields are an error, never silently ignored."""
    unknown = sorted(set(body) - set(accepted))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {unknown}; accepted: {list(accepted)}")


def options_of(body: dict[str, Any]) -> dict[str, Any]:
    """The synthesis-option fields of a checked body."""
    return {k: body[k] for k in OPTION_FIELDS if k in body}


def job_request() -> dict[str, Any]:
    """The job's fields from JSON, or from a multipart upload (`file` plus form fields)."""
    limit = state().config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    if not request.files:
        return json_object(limit=limit)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidRequest("send the text as a multipart field named 'file' (.txt or .md)")
    suffix = Path(upload.filename).suffix.lower()
    if suffix not in UPLOAD_TYPES:
        raise InvalidRequest(f"upload a .txt or .md file; got {upload.filename!r}")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the uploaded file is not UTF-8 text") from exc
    body: dict[str, Any] = {"text": markdown_to_text(text) if suffix == ".md" else text}
    for key, value in request.form.items():
        body[key] = form_value(key, value)
    return body


def form_value(key: str, value: str) -> Any:
    """Form fields are strings; numbers and booleans are read as JSON would give them."""
    if key == "voice_preset":
        return int(value) if is_ascii_digits(value) else value
    if key in OPTION_FIELDS:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidRequest(f"form field {key!r} must be a number or true/false; got {value!r}") from exc
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A query-string integer in [low, high], or a 400 that says so."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not is_ascii_digits(raw) or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}; got {raw!r}")
    return int(raw)


def is_ascii_digits(text: str) -> bool:
    """True for '0'-'9' only: `str.isdigit` also accepts '²' and other digits `int()` refuses."""
    return text.isascii() and text.isdigit()
