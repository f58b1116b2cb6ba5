"""Application factory and the one place where errors become JSON."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from barkserve.cloning.clone import Cloner
from barkserve.config import ServerConfig
from barkserve.errors import BarkServeError
from barkserve.jobs import JobRunner, JobStore
from barkserve.server.streams import StreamLog
from barkserve.synthesizer import Synthesizer

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """What the views share; stored in `app.extensions["barkserve"]`."""

    config: ServerConfig
    synthesizer: Synthesizer
    jobs: JobStore
    runner: JobRunner
    cloner: Cloner
    streams: StreamLog = field(default_factory=StreamLog)


def create_app(
    config: ServerConfig | None = None, synthesizer: Synthesizer | None = None, start_jobs: bool = True
) -> Flask:
    """Build the Flask app for `config` (defaults when None).

    With `start_jobs`, the durable-job runner starts in a background thread and resumes any job
    a previous process left unfinished.
    """
    from barkserve.cloning import routes as cloning_routes
    from barkserve.server import routes_jobs, routes_meta, routes_openai, routes_synthesize

    config = config or ServerConfig()
    synthesizer = synthesizer or Synthesizer(config)
    app = Flask(__name__)
    # The per-route limits (max_body_bytes for JSON, max_upload_bytes for jobs) are checked in the views.
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_body_bytes, config.max_upload_bytes)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.database)
    runner = JobRunner(
        store, synthesizer, config.jobs_dir, lease_sec=config.job_lease_sec, retention_hours=config.job_retention_hours
    )
    cloner = make_cloner(config, synthesizer)
    app.extensions["barkserve"] = AppState(config, synthesizer, jobs=store, runner=runner, cloner=cloner)
    app.register_blueprint(routes_synthesize.bp)
    app.register_blueprint(routes_meta.bp)
    app.register_blueprint(routes_openai.bp)
    app.register_blueprint(routes_jobs.bp)
    app.register_blueprint(cloning_routes.make_blueprint(lambda: state().cloner))
    app.register_error_handler(BarkServeError, _library_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    if start_jobs:
        runner.start()
    return app


def make_cloner(config: ServerConfig, synthesizer: Synthesizer) -> Cloner:
    """The voice cloner of the default model; HuBERT and the codec load on the first clone."""
    from barkserve.models import pick_device

    def is_preset(name: str) -> bool:
        presets = synthesizer.registry.voices(config.default_model).presets
        return name in presets or f"v2/{name}" in presets

    return Cloner(
        voices_dir=config.voices_dir,
        codec_model=lambda: synthesizer.registry.get(config.default_model).model.codec_model,
        is_preset=is_preset,
        hubert=config.hubert or None,
        layer=config.hubert_layer or None,
        quantizer_path=Path(config.quantizer) if config.quantizer else None,
        device=pick_device(config.device),
        local_files_only=config.offline,
        max_bytes=config.max_upload_bytes,
    )


def state() -> AppState:
    from flask import current_app

    return current_app.extensions["barkserve"]


def error_body(code: str, message: str, status: int = 400) -> dict[str, Any]:
    """`{"error": {"code", "message"}}`, plus OpenAI's `type` and `param` so its clients read it too."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"code": code, "message": message, "type": kind, "param": None}}


def _library_error(exc: BarkServeError) -> Any:
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return jsonify(error_body(exc.code, exc.message, exc.status)), exc.status


def _http_error(exc: HTTPException) -> Any:
    code = (exc.name or "error").lower().replace(" ", "_")
    messages = {
        404: "no such resource; see GET /health, /voices, /models and POST /synthesize",
        405: "method not allowed here; POST /synthesize takes JSON, the GET routes take no body",
        413: "request body too large; see the max_body_bytes and max_upload_bytes settings",
    }
    message = messages.get(exc.code or 0, exc.description or code)
    return jsonify(error_body(code, message, exc.code or 500)), exc.code or 500


def _unexpected_error(exc: Exception) -> Any:
    log.exception("unexpected error")
    return jsonify(error_body("internal_error", "internal server error; see the server log", 500)), 500
