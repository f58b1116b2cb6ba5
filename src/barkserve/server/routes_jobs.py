"""Durable jobs: POST /jobs (JSON text or a book upload), GET /jobs, GET /jobs/<id>[/chunks|/audio|/captions];
POST /books/plan: a book upload's plan, before its job is queued."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file

from barkserve.audio.encode import get_format
from barkserve.books import Book, parse_chapters, read_book
from barkserve.captions import MIMETYPES as CAPTION_MIMETYPES
from barkserve.captions import check_format, from_json, render
from barkserve.errors import InvalidRequest, NotFound
from barkserve.jobs.files import JobFiles
from barkserve.jobs.preview import plan_view
from barkserve.jobs.store import Conflict, delivery_view, job_view
from barkserve.jobs.submit import JobRequest, prepare_book_job, prepare_job, submit_job, with_notifications
from barkserve.server.access import current
from barkserve.server.requests import (
    JOB_FIELDS,
    OPTION_FIELDS,
    REQUEST_FIELDS,
    UPLOAD_FIELDS,
    Upload,
    check_fields,
    int_arg,
    job_request,
    options_of,
)
from barkserve.server.state import state

# What a book upload becomes when `output` is not given: an audiobook, except plain text and Markdown,
# which keep giving the one audio file (in `format`) they gave before books had chapters.
FLAT_UPLOADS = (".txt", ".md", ".markdown")
MIMETYPES = {"m4b": "audio/mp4", "zip": "application/zip", "epub3": "application/epub+zip"}

bp = Blueprint("jobs", __name__)


@bp.post("/jobs")
def create_job() -> Any:
    """Queue a durable job for a long text; answers 202 with its id and location."""
    ctx = state()
    body, upload = job_request()
    if upload is not None:
        job_req = book_job(body, upload)
    else:
        check_fields(body, REQUEST_FIELDS + OPTION_FIELDS + JOB_FIELDS)
        if "text" not in body:
            raise InvalidRequest("field 'text' is required (or upload a book file as 'file')")
        job_req = prepare_job(
            ctx.synthesizer,
            body["text"],
            voice=body.get("voice_preset"),
            model=body.get("model"),
            fmt=body.get("format", "mp3"),
            options=options_of(body),
            caption_words=body.get("caption_words", False),
        )
    job_req = notified(job_req, body)
    job, created = submit_job(
        ctx.jobs, job_req, idempotency_key=request.headers.get("Idempotency-Key"), tenant=current().tenant
    )
    response = jsonify(job_view(job, ctx.jobs.book_progress(job.id)))
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/books/plan")
def plan_book() -> Any:
    """Plan a book upload as POST /jobs would queue it (chapters, words, chunks, language, voices); queue nothing."""
    body, upload = job_request()
    if upload is None:
        raise InvalidRequest("upload the book as a multipart field named 'file', with the fields POST /jobs takes")
    book, job_req = read_book_job(body, upload)
    return jsonify(plan_view(state().synthesizer, job_req, book, parse_chapters(body.get("chapters"))))


def book_job(body: dict[str, Any], upload: Upload) -> JobRequest:
    """A book upload's job: the book read and every voice checked before it is queued."""
    return read_book_job(body, upload)[1]


def notified(job_req: JobRequest, body: dict[str, Any]) -> JobRequest:
    """The job with the notifications its request asks for (`webhook`, `audiobookshelf`), checked."""
    return with_notifications(job_req, state().config.notify, body.get("webhook"), body.get("audiobookshelf", False))


def read_book_job(body: dict[str, Any], upload: Upload) -> tuple[Book, JobRequest]:
    """The book of an upload, and its job checked as POST /jobs queues it."""
    ctx = state()
    check_fields(body, UPLOAD_FIELDS)
    book = read_book(upload.data, upload.filename, max_bytes=ctx.config.max_book_bytes)
    flat = upload.filename.lower().endswith(FLAT_UPLOADS)
    return book, prepare_book_job(
        ctx.synthesizer,
        book,
        voice=body.get("voice_preset"),
        model=body.get("model"),
        fmt=body.get("format", "mp3"),
        options=options_of(body),
        output=body.get("output", "single" if flat else "m4b"),
        chapters=parse_chapters(body.get("chapters")),
        chapter_voices=body.get("chapter_voices"),
        caption_words=body.get("caption_words", False),
        cast=body.get("cast"),
    )


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
    """State, chunks done and total (per chapter for a book), audio seconds so far, ETA and error of a job."""
    return jsonify(job_detail(job_id))


def job_detail(job_id: str) -> dict[str, Any]:
    """A job's view with its progress per chapter (books) and its notifications."""
    jobs = state().jobs
    view = job_view(jobs.get(job_id), jobs.book_progress(job_id))
    return {**view, "deliveries": [delivery_view(d) for d in jobs.deliveries(job_id)]}


@bp.post("/jobs/<job_id>/deliveries/retry")
def retry_deliveries(job_id: str) -> Any:
    """Send a job's failed notifications (webhook, Audiobookshelf upload) again, from a fresh count of attempts."""
    jobs = state().jobs
    jobs.get(job_id)
    if not jobs.retry_deliveries(job_id):
        raise Conflict(f"job {job_id} has no failed notification to retry; GET /jobs/{job_id} lists its deliveries")
    return jsonify(job_detail(job_id))


@bp.get("/webhooks/secret")
def webhook_secret() -> Any:
    """The calling key's webhook signing secret (Standard Webhooks: verify each delivery's webhook-signature)."""
    notifier = state().runner.notifier
    if notifier is None:
        raise NotFound("this server sends no job notifications")
    return jsonify({"secret": notifier.signer.secret(current().tenant), "scheme": "standard-webhooks v1"})


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
    """The finished audio: a book's .m4b, zip of chapters or read-along .epub, else the job's format;
    `?format=` one file."""
    ctx = state()
    job = ctx.jobs.get(job_id)
    if job.state != "succeeded":
        raise Conflict(f"job {job_id} is {job.state}; its audio is ready once the state is 'succeeded'")
    book = ctx.jobs.book(job_id)
    if book is not None and book.output in MIMETYPES and "format" not in request.args:
        path = JobFiles(ctx.config.jobs_dir, job.id).book(book.output)
        name = f"job-{job.id}.{'epub' if book.output == 'epub3' else book.output}"
        return send_file(path.resolve(), mimetype=MIMETYPES[book.output], download_name=name, max_age=0)
    fmt = get_format(request.args.get("format", job.format))
    path = JobFiles(ctx.config.jobs_dir, job.id).ensure(fmt)
    name = f"job-{job.id}.{fmt.extension}"
    return send_file(path.resolve(), mimetype=fmt.mimetype, download_name=name, max_age=0)


@bp.get("/jobs/<job_id>/captions")
def get_captions(job_id: str) -> Any:
    """A finished job's captions: `?format=srt` (default), `vtt` or `json`; `?chapter=N` one chapter's, from 0."""
    ctx = state()
    job = ctx.jobs.get(job_id)
    fmt = check_format(request.args.get("format", "srt"))
    chapter = chapter_arg(job.id)
    if job.state != "succeeded":
        raise Conflict(f"job {job_id} is {job.state}; its captions are ready once the state is 'succeeded'")
    files = JobFiles(ctx.config.jobs_dir, job.id)
    path = files.captions(chapter)
    if not path.is_file():
        what = "captions" if chapter is None else "captions per chapter"
        raise NotFound(f"job {job_id} finished before barkserve made {what}; submit it again to have them")
    text = path.read_text(encoding="utf-8")  # the stored JSON (with its warnings), or the cues in it as `fmt`
    response = Response(text if fmt == "json" else render(from_json(text), fmt), mimetype=CAPTION_MIMETYPES[fmt])
    name = f"job-{job.id}" if chapter is None else f"job-{job.id}-chapter-{chapter:02d}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def chapter_arg(job_id: str) -> int | None:
    """The checked `?chapter=` of a book job's captions (from 1), or None when it is not given."""
    if "chapter" not in request.args:
        return None
    progress = state().jobs.book_progress(job_id)
    if progress is None:
        raise InvalidRequest(f"job {job_id} is a text job, not a book, so it has no chapters; leave out ?chapter")
    return int_arg("chapter", 1, 1, len(progress["chapters"]))


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Any:
    """Cancel a queued or running job (409 if it already ended)."""
    return jsonify(job_view(state().jobs.cancel(job_id)))
