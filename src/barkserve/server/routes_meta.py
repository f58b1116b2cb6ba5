"""GET /health and /models."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, jsonify

from barkserve.config import MODEL_ALIASES
from barkserve.server.state import state

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health() -> Any:
    """Report whether the default model can serve; 503 when it failed to load."""
    ctx = state()
    models = ctx.synthesizer.registry.status()
    default = ctx.config.default_model
    ok = models[default]["state"] != "unavailable"
    body = {"status": "ok" if ok else "unavailable", "default_model": default, "models": models, "pid": os.getpid()}
    return jsonify(body), 200 if ok else 503


@bp.get("/models")
def models() -> Any:
    """List the models requests may name (each model, then its LoRA adapters), with aliases and load state."""
    ctx = state()
    registry = ctx.synthesizer.registry
    status = registry.status()
    entries = []
    for name in registry.served_names():
        model, adapter = registry.split(name)
        source = ctx.config.model_source(name)
        aliases = [] if adapter else sorted(a for a, t in MODEL_ALIASES.items() if t == source)
        extra = {"base_model": model, "adapter": adapter} if adapter else {}
        entries.append({"id": name, "aliases": aliases, **extra, **status[model]})
    return jsonify({"default": ctx.config.default_model, "models": entries})
