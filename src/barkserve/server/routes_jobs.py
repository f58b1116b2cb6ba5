"""Durable jobs: POST /jobs, GET /jobs, GET /jobs/<id>[/chunks|/audio], DELETE /jobs/<id>."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from barkserve.audio import write_file
from barkserve.errors import InvalidRequest
from barkserve.formats import get_format
from barkserve.jobs.store import Conflict, job_view
from barkserve.jobs.submit import prepare_job, submit_job
from barkserve.options import SynthesisOptions
from barkserve.server.app import state
from barkserve.server.routes_synthesize import check_fields, json_object
from barkserve.text import markdown_to_text

bp = Blueprint("jobs", __name__)
REQUEST_FIELDS = ("text", "voice_preset", "model", "format")
OPTION_FIELDS = tuple(SynthesisOptions.__dataclass_fields__)
UPLOAD_TYPES = (".txt", ".md")


def job_request() -> dict[str, Any]:
    """The job's fields from JSON, or from a multipart upload (`file` plus form fields)."""
    limit = state().config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    if request.files:
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
            body[key] = _form_value(key, value)
        return body
    return json_object(limit=state().config.max_upload_bytes)


def _form_value(key: str, value: str) -> Any:
    """Form fields are strings; numbers and booleans are read as JSON would give them."""
    import json

    if key in ("voice_preset",):
        return int(value) if value.isdigit() else value
    if key in OPTION_FIELDS:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidRequest(f"form field {key!r} must be a number or true/false; got {value!r}") from exc
    return value


@bp.post("/jobs")
def create_job() -> Any:
    """Queue a durable job for a long text; answers 202 with its id and location."""
    app = state()
    body = job_request()
    check_fields(body, REQUEST_FIELDS + OPTION_FIELDS)
    if "text" not in body:
        raise InvalidRequest("field 'text' is required (or upload a .txt/.md file as 'file')")
    job_req = prepare_job(
        app.synthesizer,
        body["text"],
        voice=body.get("voice_preset"),
        model=body.get("model"),
        fmt=body.get("format", "mp3"),
        options={k: body[k] for k in OPTION_FIELDS if k in body},
    )
    job, created = submit_job(app.jobs, job_req, idempotency_key=request.headers.get("Idempotency-Key"))
    response = jsonify(job_view(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/jobs")
def list_jobs() -> Any:
    """List jobs, newest first: `?limit=` (1-200, default 50), `?offset=`, `?state=`."""
    limit = _int_arg("limit", 50, 1, 200)
    offset = _int_arg("offset", 0, 0, 10**9)
    jobs, total = state().jobs.page(limit, offset, request.args.get("state"))
    following = offset + limit if offset + limit < total else None
    return jsonify({"jobs": [job_view(j) for j in jobs], "total": total, "limit": limit, "offset": offset,
                    "next_offset": following})  # fmt: skip


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}; got {raw!r}")
    return int(raw)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Any:
    """State, chunks done and total, audio seconds so far, ETA and error of a job."""
    return jsonify(job_view(state().jobs.get(job_id)))


@bp.get("/jobs/<job_id>/chunks")
def get_chunks(job_id: str) -> Any:
    """Each chunk of a job: its text, whether it is done, and how many generations it took."""
    store = state().jobs
    store.get(job_id)
    rows = store.chunks(job_id)
    return jsonify({"chunks": [{"index": c.index, "text": c.text, "done": c.done, "attempts": c.attempts,
                                "samples": c.samples} for c in rows]})  # fmt: skip


@bp.get("/jobs/<job_id>/audio")
def get_audio(job_id: str) -> Any:
    """The finished audio, in the job's format or `?format=`."""
    app = state()
    job = app.jobs.get(job_id)
    if job.state != "succeeded":
        raise Conflict(f"job {job_id} is {job.state}; its audio is ready once the state is 'succeeded'")
    fmt = get_format(request.args.get("format", job.format))
    folder = app.config.jobs_dir / job.id
    path = folder / f"final.{fmt.name}"
    if not path.is_file():
        import soundfile as sf

        audio, rate = sf.read(folder / "final.flac", dtype="float32")
        write_file(path, audio, rate, fmt)
    name = f"job-{job.id}.{fmt.extension}"
    return send_file(path.resolve(), mimetype=fmt.mimetype, download_name=name, max_age=0)


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Any:
    """Cancel a queued or running job (409 if it already ended)."""
    return jsonify(job_view(state().jobs.cancel(job_id)))
