"""GET /health, /voices and /models."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, jsonify, request

from barkserve.config import MODEL_ALIASES
from barkserve.server.app import state

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health() -> Any:
    """Report whether the default model can serve; 503 when it failed to load."""
    app = state()
    models = app.synthesizer.registry.status()
    default = app.config.default_model
    ok = models[default]["state"] != "unavailable"
    body = {"status": "ok" if ok else "unavailable", "default_model": default, "models": models, "pid": os.getpid()}
    return jsonify(body), 200 if ok else 503


@bp.get("/voices")
def voices() -> Any:
    """List the presets of a model (`?model=`, default model otherwise) and the custom voices."""
    app = state()
    registry = app.synthesizer.registry
    name = registry.resolve(request.args.get("model"))
    library = registry.voices(name)
    return jsonify(
        {
            "model": name,
            "default": app.config.default_voice,
            "numbers": {str(n): f"v2/en_speaker_{n}" for n in range(10)},
            "presets": library.presets.names(),
            "custom": library.list_custom(),
        }
    )


@bp.get("/models")
def models() -> Any:
    """List the models requests may name, with their aliases and load state."""
    app = state()
    status = app.synthesizer.registry.status()
    return jsonify(
        {
            "default": app.config.default_model,
            "models": [
                {
                    "id": name,
                    "aliases": sorted(a for a, target in MODEL_ALIASES.items() if target == name),
                    **status[name],
                }
                for name in app.config.allowed_models
            ],
        }
    )
