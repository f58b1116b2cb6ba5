"""Voices: GET /voices (presets and custom voices), POST /voices (clone), DELETE /voices/<name>,
GET /voices/<name>/preview (a short sample, made once)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, jsonify, request, send_file

from barkserve.cloning.audio_in import size_text
from barkserve.errors import AudioTooLarge, ConsentRequired, InvalidRequest, InvalidVoice, NotFound, TooManyVoices
from barkserve.server.access import access, current, forget_voice, is_loopback, voice_claim
from barkserve.server.requests import load_json
from barkserve.server.state import state
from barkserve.server.voice_preview import PREVIEW_DIR, PREVIEW_FORMATS, forget, preview
from barkserve.voices import VoiceRecord

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
    record = upload_record()
    # The voice belongs to the request's key, within its cap.
    result = cloner.clone(upload.stream, name, reserve=capped_claim, record=record)
    return jsonify({"voice": result.to_dict()}), 201


RECORD_FIELDS = ("consent", "ref_text", "description", "language")


def upload_record() -> VoiceRecord:
    """The upload's record: `consent` (required true from beyond this machine), `ref_text`, `description`
    and `language`, checked before any audio is read."""
    unknown = sorted(set(request.form) - {"name", *RECORD_FIELDS})
    if unknown:
        raise InvalidRequest(
            f"unknown form field(s) {unknown}; POST /voices takes file, name, {', '.join(RECORD_FIELDS)}"
        )
    consent = request.form.get("consent")
    fields: dict[str, Any] = {k: request.form[k] for k in ("ref_text", "description", "language") if k in request.form}
    if consent is not None:
        fields["consent"] = load_json(consent.strip().lower(), "form field 'consent' (true or false)")
    record = VoiceRecord.checked(**fields, created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    if record.consent is not True and not is_loopback(request.remote_addr or ""):
        raise ConsentRequired(
            "uploads from beyond this machine need consent=true: confirm that the person whose voice this is "
            "agreed to its cloning"
        )
    return record


@contextmanager
def capped_claim(name: str) -> Iterator[None]:
    """`voice_claim`, refused once the key stores max_voices_per_key voices (setting; 0: no cap)."""
    cap = state().config.max_voices_per_key
    if cap:
        tenant = current().tenant
        voices_dir = state().config.voices_dir
        owners = access().keys.voice_owners()
        stored = sum(owner == tenant and (voices_dir / f"{n}.npz").is_file() for n, owner in owners.items())
        if stored >= cap:
            raise TooManyVoices(
                f"this key stores {stored} custom voices, the most the server allows (setting max_voices_per_key "
                f"{cap}); delete one (DELETE /voices/<name>) first"
            )
    with voice_claim(name):
        yield


@bp.delete("/voices/<path:name>")
def delete_voice(name: str) -> Any:
    """Delete a custom voice; presets cannot be deleted."""
    ctx = state()
    ctx.cloner.delete(name)
    forget_voice(name)
    forget(ctx.config.voices_dir / PREVIEW_DIR, name)
    return jsonify({"deleted": name})


@bp.get("/voices/<path:name>/preview")
def voice_preview(name: str) -> Any:
    """A short sample of a voice (`?model=`, `?format=` mp3|wav|opus|flac), made once and kept on disk."""
    ctx = state()
    fmt = request.args.get("format", "mp3")
    if fmt not in PREVIEW_FORMATS:
        raise InvalidRequest(f"format must be one of {list(PREVIEW_FORMATS)}; got {fmt[:20]!r}")
    folder = ctx.config.voices_dir / PREVIEW_DIR
    try:
        path, made = preview(ctx.synthesizer, folder, name, request.args.get("model"), fmt)
    except InvalidVoice as exc:
        raise NotFound(f"no voice named {name!r}; GET /voices lists them") from exc
    response = send_file(path, mimetype=f"audio/{'mpeg' if fmt == 'mp3' else 'ogg' if fmt == 'opus' else fmt}")
    response.headers["X-Preview-Made"] = "true" if made else "false"
    return response
