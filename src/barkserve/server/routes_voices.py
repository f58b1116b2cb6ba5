"""Voices: GET /voices (presets and custom voices), POST /voices (clone), DELETE /voices/<name>."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from barkserve.cloning.audio_in import size_text
from barkserve.errors import AudioTooLarge, InvalidRequest
from barkserve.server.access import forget_voice, voice_claim
from barkserve.server.state import state

bp = Blueprint("voices", __name__)
# Room for the multipart framing and the name around the audio file.
FORM_OVERHEAD = 64 * 1024


@bp.get("/voices")
def list_voices() -> Any:
    """List the presets of a model (`?model=`, default model otherwise) and the custom voices."""
    ctx = state()
    registry = ctx.synthesizer.registry
    name = registry.resolve(request.args.get("model"))
    library = registry.voices(name)
    return jsonify(
        {
            "model": name,
            "default": ctx.config.default_voice,
            "numbers": {str(n): f"v2/en_speaker_{n}" for n in range(10)},
            "presets": library.presets.names(),
            "custom": library.list_custom(),
        }
    )


@bp.post("/voices")
def create_voice() -> Any:
    """Clone the uploaded recording (multipart: `file`, `name`) into a custom voice."""
    cloner = state().cloner
    limit = cloner.max_bytes + FORM_OVERHEAD
    if request.content_length is not None and request.content_length > limit:
        raise AudioTooLarge(f"the upload is over {size_text(cloner.max_bytes)}; send a shorter recording")
    # Audio is larger than JSON bodies: this route has its own limit (Flask >= 3.1).
    request.max_content_length = limit
    if not request.mimetype.startswith("multipart/form-data"):
        raise InvalidRequest("POST /voices takes multipart/form-data with an audio `file` and a `name`")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidRequest("POST /voices needs an audio file in the form field `file`")
    name = request.form.get("name", "")
    result = cloner.clone(upload.stream, name, reserve=voice_claim)  # the voice belongs to the request's key
    return jsonify({"voice": result.to_dict()}), 201


@bp.delete("/voices/<path:name>")
def delete_voice(name: str) -> Any:
    """Delete a custom voice; presets cannot be deleted."""
    state().cloner.delete(name)
    forget_voice(name)
    return jsonify({"deleted": name})
