"""The job store: jobs, their chunks and books, in the server's database (`barkserve.db`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from barkserve.db import Base, Database, utcnow
from barkserve.errors import Conflict, InvalidRequest, NotFound

log = logging.getLogger(__name__)
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    text: Mapped[str] = mapped_column(Text)
    voice: Mapped[str] = mapped_column(String(128))  # resolved voice name
    model: Mapped[str] = mapped_column(String(512))  # canonical allowlisted model
    format: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # SynthesisOptions fields, seed fixed
    idempotency_key: Mapped[str | None] = mapped_column(String(256), unique=True, nullable=True)
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    chunks_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    audio_sec: Mapped[float] = mapped_column(Float, default=0.0)
    generation_sec: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # The API key that made the job (its id; never its secret); None: anonymous (auth off, or made
    # before keys existed). Added after the first release: `add_missing_columns` adds it to old databases.
    tenant: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # Whether the captions get word times (aligned when the audio is assembled); None: no (older jobs).
    caption_words: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # What went less well than asked in a job that succeeded (word timing that fell back to sentences).
    warnings: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Where to POST the job's end (a checked http(s) URL), and where to upload its book ("audiobookshelf").
    webhook: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    upload: Mapped[str | None] = mapped_column(String(32), nullable=True)


class JobChunk(Base):
    __tablename__ = "job_chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    done: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # generations started
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str | None] = mapped_column(String(512), nullable=True)


class JobBook(Base):
    """A book job's chapters (each a title and its voiced segments), metadata and output kind."""

    __tablename__ = "job_books"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    title: Mapped[str] = mapped_column(String(512))
    author: Mapped[str | None] = mapped_column(String(512), nullable=True)
    output: Mapped[str] = mapped_column(String(16))  # "m4b", "zip" (chapter files) or "single" (one file)
    chapters: Mapped[list[Any]] = mapped_column(JSON)  # [{"title", "segments": [{"voice", "text"}]}]
    cover: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    chapter_chunks: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)  # chunks per chapter, once planned
    # Output "epub3" (read-along): the EPUB the book was read from (None: made from the text), its language.
    source: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    language: Mapped[str | None] = mapped_column(String(35), nullable=True)


class Delivery(Base):
    """A notification of a job's end, kept until it is delivered or has failed every attempt (an outbox:
    written in the same transaction that ends the job, so a crash loses none)."""

    __tablename__ = "job_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the webhook-id of every attempt
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "webhook" or "audiobookshelf"
    event: Mapped[str] = mapped_column(String(32))  # job.succeeded, job.failed, job.cancelled
    url: Mapped[str] = mapped_column(String(2048), default="")  # the webhook's; the server's for uploads
    tenant: Mapped[str | None] = mapped_column(String(32), nullable=True)  # whose secret signs it
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True, default="pending")  # delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    log: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the last attempts: at, status, error
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ServerSecret(Base):
    """A secret the server makes once and every process sharing the database uses (the webhook master)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


DELIVERY_LOG = 20  # attempts kept in a delivery's log


class JobStore(Database):
    """Every read and write of jobs; each method is one short transaction."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url
        # Called with (job id, audio seconds, generation seconds) after each chunk a job finishes.
        self.on_chunk_done: Callable[[str, float, float], None] | None = None

    def create(
        self, *, idempotency_key: str | None, book: dict[str, Any] | None = None, **fields: Any
    ) -> tuple[Job, bool]:
        """Insert a queued job (with its `JobBook` fields when `book`); with a key seen before, return
        that job instead (created=False)."""
        if idempotency_key is not None:
            existing = self.by_key(idempotency_key)
            if existing is not None:
                if existing.request_hash != fields.get("request_hash"):
                    raise Conflict("this Idempotency-Key was used for a different request; use a new key")
                return existing, False
        job = Job(id=uuid.uuid4().hex, state="queued", idempotency_key=idempotency_key, **fields)
        try:
            with self.session() as session:
                session.add(job)
                if book is not None:
                    session.flush()  # the job's row first: the book's refers to it
                    session.add(JobBook(job_id=job.id, **book))
        except IntegrityError:  # a concurrent retry with the same key won the race
            existing = self.by_key(idempotency_key or "")
            if existing is None:
                raise
            return existing, False
        return job, True

    def by_key(self, key: str) -> Job | None:
        with self.session() as session:
            return session.scalars(select(Job).where(Job.idempotency_key == key)).first()

    def get(self, job_id: str, tenant: str | None = None) -> Job:
        """The job `job_id`; with `tenant`, only if that key made it (another's job is not found either)."""
        with self.session() as session:
            job = session.get(Job, job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            raise NotFound(f"no job with id {job_id!r}; GET /jobs lists them")
        return job

    def page(
        self, limit: int, offset: int, state: str | None = None, tenant: str | None = None
    ) -> tuple[Sequence[Job], int]:
        """A page of jobs, newest first; with `tenant`, only that key's."""
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state must be one of {list(STATES)}; got {state!r}")
        with self.session() as session:
            query = select(Job)
            count = select(func.count()).select_from(Job)
            if state:
                query, count = query.where(Job.state == state), count.where(Job.state == state)
            if tenant is not None:
                query, count = query.where(Job.tenant == tenant), count.where(Job.tenant == tenant)
            jobs = session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
            return jobs, int(session.scalar(count) or 0)

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (every state named, 0 when none)."""
        with self.session() as session:
            counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).tuples().all())
        return {state: int(counts.get(state, 0)) for state in STATES}

    def book(self, job_id: str) -> JobBook | None:
        """The book of a book job; None for a text job."""
        with self.session() as session:
            return session.get(JobBook, job_id)

    def book_progress(self, job_id: str) -> dict[str, Any] | None:
        """A book job's `book` (title, author, output) and `chapters` (number, title, chunks done and
        total, None until planned); None for a text job."""
        with self.session() as session:  # not the cover: only what the progress needs
            columns = (JobBook.title, JobBook.author, JobBook.output, JobBook.chapters, JobBook.chapter_chunks)
            row = session.execute(select(*columns).where(JobBook.job_id == job_id)).first()
            if row is None:
                return None
            title, author, output, chapters, counts = row
            done = set(session.scalars(select(JobChunk.index).where(JobChunk.job_id == job_id, JobChunk.done)))
        out, first = [], 0
        for k, chapter in enumerate(chapters):
            total = counts[k] if counts else None
            finished = sum(1 for i in range(first, first + total) if i in done) if total is not None else 0
            out.append({"chapter": k + 1, "title": chapter["title"], "chunks_done": finished, "chunks_total": total})
            first += total or 0
        return {"book": {"title": title, "author": author, "output": output}, "chapters": out}

    def chapter_progress(self, job_id: str) -> list[dict[str, Any]] | None:
        """Per chapter of a book job: number, title, chunks done and total (None until planned)."""
        progress = self.book_progress(job_id)
        return None if progress is None else progress["chapters"]

    def chunks(self, job_id: str) -> list[JobChunk]:
        with self.session() as session:
            return list(session.scalars(select(JobChunk).where(JobChunk.job_id == job_id).order_by(JobChunk.index)))

    def cancel(self, job_id: str, tenant: str | None = None) -> Job:
        with self.session() as session:
            job = session.get(Job, job_id)
            if job is None or (tenant is not None and job.tenant != tenant):
                raise NotFound(f"no job with id {job_id!r}")
            if job.state in FINISHED:
                raise Conflict(f"job {job_id} is already {job.state}; only queued or running jobs can be cancelled")
            job.state, job.finished_at = "cancelled", utcnow()
            session.flush()
            _queue_deliveries(session, job_id)
        return job

    def claim(self, owner: str, lease_sec: float, job_id: str | None = None) -> Job | None:
        """Take the oldest queued or running job (or `job_id`) whose lease has lapsed, atomically."""
        now = utcnow()
        with self.session() as session:
            query = (
                select(Job.id)
                .where(Job.state.in_(("queued", "running")))
                .where((Job.lease_until.is_(None)) | (Job.lease_until < now))
            )
            if job_id is not None:
                query = query.where(Job.id == job_id)
            candidates = session.scalars(query.order_by(Job.created_at).limit(5)).all()
        for job_id in candidates:
            with self.session() as session:
                taken = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state.in_(("queued", "running")))
                    .where((Job.lease_until.is_(None)) | (Job.lease_until < now))
                    .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease_sec), state="running")
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return session.get(Job, job_id)
        return None

    def renew(self, job_id: str, owner: str, lease_sec: float) -> bool:
        """Extend our lease; False if the job is no longer ours or no longer running."""
        with self.session() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
                .values(lease_until=utcnow() + dt.timedelta(seconds=lease_sec))
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, job_id: str, owner: str) -> None:
        """Give up our lease (a clean stop), so the next run resumes at once."""
        with self.session() as session:
            session.execute(
                update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(lease_owner=None, lease_until=None)
            )

    def holds(self, job_id: str, owner: str) -> bool:
        """Whether `owner` holds the lease of job `job_id` and the job is still running."""
        with self.session() as session:
            query = select(Job.id).where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
            return session.scalar(query) is not None

    def plan_chunks(
        self, job_id: str, texts: Sequence[str], owner: str | None = None, chapter_chunks: Sequence[int] | None = None
    ) -> bool:
        """Record the chunks once (a resumed job keeps the rows it has), and a book's chunks per chapter;
        False if `owner` lost the lease."""
        with self.session() as session:
            if owner is not None and not _still_held(session, job_id, owner):
                return False
            if session.scalar(select(func.count()).where(JobChunk.job_id == job_id)):
                return True
            session.add_all(JobChunk(job_id=job_id, index=i, text=t) for i, t in enumerate(texts))
            session.execute(update(Job).where(Job.id == job_id).values(chunks_total=len(texts)))
            if chapter_chunks is not None:
                session.execute(
                    update(JobBook).where(JobBook.job_id == job_id).values(chapter_chunks=list(chapter_chunks))
                )
        return True

    def start_chunk(self, job_id: str, index: int, owner: str | None = None) -> bool:
        """Count an attempt at chunk `index`, in one step with the check that `owner` still holds the
        running job; False (and nothing counted) when it does not."""
        with self.session() as session:
            if owner is not None and not _still_held(session, job_id, owner):
                return False
            session.execute(
                update(JobChunk)
                .where(JobChunk.job_id == job_id, JobChunk.index == index)
                .values(attempts=JobChunk.attempts + 1)
            )
        return True

    def finish_chunk(
        self, job_id: str, index: int, path: str, samples: int, audio_sec: float, took: float, owner: str | None = None
    ) -> bool:
        """Mark a chunk done (its file is already in place) and advance the job's counters.

        With `owner`, only while that owner holds the lease of the running job; False (nothing
        recorded) once it does not.
        """
        with self.session() as session:
            counters = session.execute(
                _owned(update(Job), job_id, owner).values(
                    chunks_done=Job.chunks_done + 1,
                    audio_sec=Job.audio_sec + audio_sec,
                    generation_sec=Job.generation_sec + took,
                )
            )
            if counters.rowcount != 1:  # type: ignore[attr-defined]
                return False  # nothing was written
            session.execute(
                update(JobChunk)
                .where(JobChunk.job_id == job_id, JobChunk.index == index)
                .values(done=True, path=path, samples=samples)
            )
        if self.on_chunk_done is not None:
            try:
                self.on_chunk_done(job_id, audio_sec, took)
            except Exception:  # counting (metrics, quotas) must never fail the chunk it counts
                log.exception("on_chunk_done failed for job %s", job_id)
        return True

    def finish(
        self,
        job_id: str,
        state: str,
        error: str | None = None,
        owner: str | None = None,
        warnings: Sequence[str] | None = None,
    ) -> bool:
        """End a running job as `state` (with its `warnings`); with `owner`, only while it holds the lease.
        True if it applied."""
        values: dict[str, Any] = {"state": state, "error": error, "finished_at": utcnow()}
        if warnings:
            values["warnings"] = list(warnings)
        with self.session() as session:
            result = session.execute(
                _owned(update(Job), job_id, owner)
                .where(Job.state == "running")
                .values(**values, lease_owner=None, lease_until=None)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            _queue_deliveries(session, job_id)
            return True

    def expired(self, before: dt.datetime) -> list[str]:
        with self.session() as session:
            query = select(Job.id).where(Job.state.in_(FINISHED), Job.finished_at < before)
            return list(session.scalars(query))

    def deliveries(self, job_id: str) -> list[Delivery]:
        """A job's notifications, oldest first."""
        with self.session() as session:
            query = select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.created_at, Delivery.id)
            return list(session.scalars(query))

    def claim_deliveries(self, now: dt.datetime, lease_sec: float, limit: int = 10) -> list[Delivery]:
        """Take up to `limit` pending notifications that are due and not being sent by another process."""
        taken = []
        with self.session() as session:
            query = (
                select(Delivery.id)
                .where(Delivery.state == "pending", Delivery.next_at <= now)
                .where((Delivery.lease_until.is_(None)) | (Delivery.lease_until < now))
                .order_by(Delivery.next_at)
                .limit(limit)
            )
            candidates = list(session.scalars(query))
        for delivery_id in candidates:
            with self.session() as session:
                result = session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery_id, Delivery.state == "pending")
                    .where((Delivery.lease_until.is_(None)) | (Delivery.lease_until < now))
                    .values(lease_until=now + dt.timedelta(seconds=lease_sec))
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    taken.append(session.get(Delivery, delivery_id))
        return [d for d in taken if d is not None]

    def record_attempt(self, delivery_id: str, entry: dict[str, Any], next_at: dt.datetime | None, ok: bool) -> None:
        """Log one attempt; `ok`: delivered; else pending again at `next_at`, or failed when it is None."""
        with self.session() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:  # the job expired meanwhile
                return
            delivery.attempts += 1
            delivery.log = [*delivery.log, entry][-DELIVERY_LOG:]
            delivery.lease_until = None
            if ok:
                delivery.state = "delivered"
            elif next_at is None:
                delivery.state = "failed"
            else:
                delivery.next_at = next_at

    def retry_deliveries(self, job_id: str, now: dt.datetime | None = None) -> int:
        """Send a job's failed notifications again (from a fresh count of attempts); how many."""
        with self.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.job_id == job_id, Delivery.state == "failed")
                .values(state="pending", attempts=0, next_at=now or utcnow(), lease_until=None)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def delete(self, job_id: str) -> None:
        with self.session() as session:
            session.query(Delivery).filter(Delivery.job_id == job_id).delete()
            session.query(JobChunk).filter(JobChunk.job_id == job_id).delete()
            session.query(JobBook).filter(JobBook.job_id == job_id).delete()
            session.query(Job).filter(Job.id == job_id).delete()


def _queue_deliveries(session: Session, job_id: str) -> None:
    """Queue the notifications of a job that just ended (its webhook; its book's upload when it succeeded)."""
    job = session.get(Job, job_id)
    if job is None or job.state not in FINISHED:
        return
    event = f"job.{job.state}"
    row = session.execute(select(JobBook.title, JobBook.author, JobBook.output).where(JobBook.job_id == job_id)).first()
    view = job_view(job, {"book": {"title": row[0], "author": row[1], "output": row[2]}} if row else None)
    if job.webhook:
        payload = {"type": event, "timestamp": utcnow().isoformat() + "Z", "data": view}
        session.add(Delivery(id=uuid.uuid4().hex, job_id=job.id, kind="webhook", event=event, url=job.webhook,
                             tenant=job.tenant, payload=payload, log=[]))  # fmt: skip
    if job.upload == "audiobookshelf" and job.state == "succeeded":
        session.add(Delivery(id=uuid.uuid4().hex, job_id=job.id, kind="audiobookshelf", event=event,
                             tenant=job.tenant, payload={"job": job.id}, log=[]))  # fmt: skip


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """The public JSON of a notification: what, where (a webhook's URL), its state and its attempts."""
    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "event": delivery.event,
        "url": delivery.url or None,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_at.isoformat() + "Z" if delivery.state == "pending" else None,
        "log": list(delivery.log or []),
    }


def _owned(statement: Any, job_id: str, owner: str | None) -> Any:
    """`statement` on job `job_id`, limited to while `owner` (None: anyone) holds its lease."""
    statement = statement.where(Job.id == job_id)
    if owner is None:
        return statement
    return statement.where(Job.lease_owner == owner, Job.state == "running")


def _still_held(session: Session, job_id: str, owner: str) -> bool:
    """Whether `owner` holds the running job's lease, with the job's row locked until the commit."""
    # An UPDATE, not a SELECT: it takes the write lock in SQLite (and the row lock in PostgreSQL)
    # so that no claim can take the job between this check and the writes that follow it.
    result = session.execute(_owned(update(Job), job_id, owner).values(lease_owner=owner))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def job_view(job: Job, book: dict[str, Any] | None = None) -> dict[str, Any]:
    """The public JSON of a job, with an ETA from the average time per finished chunk; a book job's
    answer adds `book` and its progress per chapter, `chapters` (from `JobStore.book_progress`)."""
    eta = None
    if job.state == "running" and job.chunks_total and job.chunks_done:
        eta = round(job.generation_sec / job.chunks_done * (job.chunks_total - job.chunks_done), 1)
    return {
        "id": job.id,
        "state": job.state,
        "chunks_done": job.chunks_done,
        "chunks_total": job.chunks_total,
        "audio_sec": round(job.audio_sec, 3),
        "eta_sec": eta,
        "error": job.error,
        "voice": job.voice,
        "model": job.model,
        "format": job.format,
        "seed": job.options.get("seed"),
        "created_at": job.created_at.isoformat() + "Z",
        "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
        "location": f"/jobs/{job.id}",
        "audio_url": f"/jobs/{job.id}/audio" if job.state == "succeeded" else None,
        "caption_words": bool(job.caption_words),
        "warnings": list(job.warnings or []),
        "webhook": job.webhook,
        "audiobookshelf": job.upload == "audiobookshelf",
        **(book or {}),
    }


def fingerprint(fields: dict[str, Any]) -> str:
    """A stable hash of what a job was asked to do, to tell a retry from a different request."""
    import hashlib

    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
