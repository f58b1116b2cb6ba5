"""Durable jobs: POST /jobs, GET /jobs, GET /jobs/<id>[/chunks|/audio], DELETE /jobs/<id>."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, send_file

from barkserve.audio.encode import get_format
from barkserve.errors import InvalidRequest
from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Conflict, job_view
from barkserve.jobs.submit import prepare_job, submit_job
from barkserve.server.access import current
from barkserve.server.requests import OPTION_FIELDS, REQUEST_FIELDS, check_fields, int_arg, job_request, options_of
from barkserve.server.state import state

bp = Blueprint("jobs", __name__)


@bp.post("/jobs")
def create_job() -> Any:
    """Queue a durable job for a long text; answers 202 with its id and location."""
    ctx = state()
    body = job_request()
    check_fields(body, REQUEST_FIELDS + OPTION_FIELDS)
    if "text" not in body:
        raise InvalidRequest("field 'text' is required (or upload a .txt/.md file as 'file')")
    job_req = prepare_job(
        ctx.synthesizer,
        body["text"],
        voice=body.get("voice_preset"),
        model=body.get("model"),
        fmt=body.get("format", "mp3"),
        options=options_of(body),
    )
    job, created = submit_job(
        ctx.jobs, job_req, idempotency_key=request.headers.get("Idempotency-Key"), tenant=current().tenant
    )
    response = jsonify(job_view(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/jobs")
def list_jobs() -> Any:
    """List jobs, newest first: `?limit=` (1-200, default 50), `?offset=`, `?state=`."""
    limit = int_arg("limit", 50, 1, 200)
    offset = int_arg("offset", 0, 0, 10**9)
    jobs, total = state().jobs.page(limit, offset, request.args.get("state"), tenant=current().tenant_filter)
    following = offset + limit if offset + limit < total else None
    return jsonify({"jobs": [job_view(j) for j in jobs], "total": total, "limit": limit, "offset": offset,
                    "next_offset": following})  # fmt: skip


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Any:
    """State, chunks done and total, audio seconds so far, ETA and error of a job."""
    return jsonify(job_view(state().jobs.get(job_id)))


@bp.get("/jobs/<job_id>/chunks")
def get_chunks(job_id: str) -> Any:
    """Each chunk of a job: its text, whether it is done, how many generations it took, its qc record."""
    ctx = state()
    ctx.jobs.get(job_id)
    files = JobFiles(ctx.config.jobs_dir, job_id)
    chunks = []
    for c in ctx.jobs.chunks(job_id):
        row = {"index": c.index, "text": c.text, "done": c.done, "attempts": c.attempts, "samples": c.samples}
        record = files.read_quality(c.index) if c.done else None
        chunks.append(row if record is None else {**row, "qc": record})
    return jsonify({"chunks": chunks})


@bp.get("/jobs/<job_id>/audio")
def get_audio(job_id: str) -> Any:
    """The finished audio, in the job's format or `?format=`."""
    ctx = state()
    job = ctx.jobs.get(job_id)
    if job.state != "succeeded":
        raise Conflict(f"job {job_id} is {job.state}; its audio is ready once the state is 'succeeded'")
    fmt = get_format(request.args.get("format", job.format))
    path = JobFiles(ctx.config.jobs_dir, job.id).ensure(fmt)
    name = f"job-{job.id}.{fmt.extension}"
    return send_file(path.resolve(), mimetype=fmt.mimetype, download_name=name, max_age=0)


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Any:
    """Cancel a queued or running job (409 if it already ended)."""
    return jsonify(job_view(state().jobs.cancel(job_id)))
