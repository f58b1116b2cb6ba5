"""The application factory: settings, resources, blueprints, error handlers."""

from __future__ import annotations

from flask import Flask

from barkserve.audio.files import OutputFolder
from barkserve.cloning.clone import Cloner
from barkserve.config import ServerConfig
from barkserve.jobs import JobRunner
from barkserve.server import access, errors, guards
from barkserve.server.routes_jobs import bp as jobs_bp
from barkserve.server.routes_lexicon import bp as lexicon_bp
from barkserve.server.routes_meta import bp as meta_bp
from barkserve.server.routes_openai import bp as openai_bp
from barkserve.server.routes_ops import init_app as init_ops
from barkserve.server.routes_synthesize import bp as synthesize_bp
from barkserve.server.routes_voices import bp as voices_bp
from barkserve.server.routes_web import bp as web_bp
from barkserve.server.state import EXTENSION, AppState
from barkserve.synthesizer import Synthesizer


def create_app(
    config: ServerConfig | None = None, synthesizer: Synthesizer | None = None, start_jobs: bool = True
) -> Flask:
    """Build the Flask app for `config` (defaults when None).

    With `start_jobs`, the durable-job runner starts in a background thread and resumes any job
    a previous process left unfinished.
    """
    config = config or ServerConfig()
    synthesizer = synthesizer or Synthesizer(config)
    app = Flask(__name__)
    # The per-route limits (max_body_bytes for JSON, max_upload_bytes for jobs) are checked in the views.
    app.config["MAX_CONTENT_LENGTH"] = max(config.max_body_bytes, config.max_upload_bytes)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Werkzeug would answer `//synthesize` with an HTML 308 redirect; an unknown path is a JSON 404.
    app.url_map.merge_slashes = False
    store, runner = JobRunner.from_settings(config.jobs, synthesizer)
    cloner = Cloner.from_settings(config.cloning, synthesizer.registry)
    outputs = OutputFolder(config.output_dir, config.max_output_mb * 1_048_576, config.output_retention_hours)
    app.extensions[EXTENSION] = app_state = AppState(config, synthesizer, store, runner, cloner, outputs)
    for bp in (synthesize_bp, meta_bp, voices_bp, openai_bp, jobs_bp, lexicon_bp, web_bp):
        app.register_blueprint(bp)
    init_ops(app, config)  # before the guards: its request timer also sees the requests they refuse
    guards.init_app(app, config)
    access.init_app(app, config, app_state)  # after the guards: a refused Host never reaches the key check
    errors.init_app(app)
    if start_jobs:
        runner.start()
    return app
