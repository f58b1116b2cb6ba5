"""HTTP: `POST /voices` (clone a recording) and `DELETE /voices/<name>`; registered by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request

from barkserve.cloning.audio_in import size_text
from barkserve.cloning.clone import Cloner
from barkserve.cloning.errors import AudioTooLarge
from barkserve.errors import InvalidRequest

# Room for the multipart framing and the name around the audio file.
FORM_OVERHEAD = 64 * 1024


def make_blueprint(get_cloner: Callable[[], Cloner]) -> Blueprint:
    """The cloning routes; `get_cloner` returns the app's `Cloner` (called per request, so it can be lazy)."""
    bp = Blueprint("cloning", __name__)

    @bp.post("/voices")
    def create_voice() -> Any:
        """Clone the uploaded recording (multipart: `file`, `name`) into a custom voice."""
        cloner = get_cloner()
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
        result = cloner.clone(upload.stream, request.form.get("name", ""))
        return jsonify({"voice": result.to_dict()}), 201

    @bp.delete("/voices/<path:name>")
    def delete_voice(name: str) -> Any:
        """Delete a custom voice; presets cannot be deleted."""
        get_cloner().delete(name)
        return jsonify({"deleted": name})

    return bp
