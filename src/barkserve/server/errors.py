"""The one place where errors become HTTP: a status per error class, and JSON for every answer."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from barkserve import errors

log = logging.getLogger(__name__)

# Each library error's HTTP status; a class not listed takes its nearest listed ancestor's.
HTTP_STATUS: dict[type[errors.BarkServeError], int] = {
    errors.BarkServeError: 500,
    errors.InvalidRequest: 400,
    errors.UnsupportedAudio: 415,
    errors.AudioTooLarge: 413,
    errors.UnsupportedBook: 415,
    errors.BookTooLarge: 413,
    errors.VoiceExists: 409,
    errors.VoiceProtected: 403,
    errors.DatasetError: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.NoSpeech: 422,
    errors.ModelUnavailable: 503,
    errors.StorageFull: 507,
    errors.StorageUnavailable: 503,
    errors.GenerationCancelled: 503,
    errors.ConfigError: 500,
    errors.RayUnavailable: 503,
    errors.ReplicaLost: 503,
    errors.NotOnRay: 501,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.RateLimited: 429,
    errors.Overloaded: 503,
}

HTTP_MESSAGES = {
    404: "no such resource; see GET /health, /voices, /models and POST /synthesize",
    413: "request body too large; see the max_body_bytes and max_upload_bytes settings",
}


def http_status(exc: errors.BarkServeError) -> int:
    """The HTTP status of a library error, found along its class's ancestry."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(code: str, message: str, status: int = 400) -> dict[str, Any]:
    """`{"error": {"code", "message"}}`, plus OpenAI's `type` and `param` so its clients read it too."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"code": code, "message": message, "type": kind, "param": None}}


def error_response(code: str, message: str, status: int) -> Any:
    """A JSON error answer, for views and request hooks that answer without raising."""
    return jsonify(error_body(code, message, status)), status


def init_app(app: Flask) -> None:
    """Register the handlers that turn every error into a JSON answer."""
    app.register_error_handler(errors.BarkServeError, _library_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _library_error(exc: errors.BarkServeError) -> Any:
    status = http_status(exc)
    if status >= 500 and not isinstance(exc, errors.Overloaded):
        log.error("%s: %s", exc.code, exc.message)
    body, status = error_response(exc.code, exc.message, status)
    return body, status, error_headers(exc)


def error_headers(exc: errors.BarkServeError) -> dict[str, str]:
    """`Retry-After` of a 429 or 503, and the Bearer challenge (RFC 6750) of a 401 or 403."""
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="barkserve"'
    elif isinstance(exc, errors.Forbidden):
        headers["WWW-Authenticate"] = f'Bearer realm="barkserve", error="insufficient_scope", scope="{exc.scope}"'
    return headers


def _http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_")
    message = HTTP_MESSAGES.get(status, exc.description or code)
    headers: dict[str, str] = {}
    if status == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        message = f"method not allowed here; this route takes {', '.join(allowed) or 'other methods'}"
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return jsonify(error_body(code, message, status)), status, headers


def _unexpected_error(exc: Exception) -> Any:
    log.exception("unexpected error")
    return jsonify(error_body("internal_error", "internal server error; see the server log", 500)), 500
