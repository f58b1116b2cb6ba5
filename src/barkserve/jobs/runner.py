"""The job runner: claims jobs, generates their chunks in order, checkpoints each one, resumes."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from barkserve.captions import Aligner, aligner_for
from barkserve.config import JobSettings
from barkserve.errors import BarkServeError, JobPlanChanged, LeaseLost, is_retryable
from barkserve.jobs.book import as_book, assemble_book, plan_book
from barkserve.jobs.chunks import ChunkSource, LocalChunks, resumed_voice
from barkserve.jobs.files import JobFiles
from barkserve.jobs.notify import Notifier
from barkserve.jobs.store import Job, JobStore, utcnow
from barkserve.synthesizer import SynthesisPlan, Synthesizer
from barkserve.voices import VoicePrompt

log = logging.getLogger(__name__)
CLEANUP_EVERY_SEC = 60.0
# Generations of one chunk that may fail with an error worth retrying (`errors.is_retryable`: CUDA out
# of memory, a lost replica, a bug) before the job fails; any other error fails it at once.
MAX_CHUNK_ATTEMPTS = 3


class JobRunner:
    """One background worker per process; several processes may share a PostgreSQL store."""

    def __init__(
        self,
        store: JobStore,
        synthesizer: Synthesizer,
        jobs_dir: Path,
        lease_sec: float = 60.0,
        retention_hours: float = 168.0,
        poll_sec: float = 0.5,
        on_chunk: Callable[[Job], None] | None = None,
        chunk_source: ChunkSource | None = None,
    ) -> None:
        self.store, self.synth, self.jobs_dir = store, synthesizer, jobs_dir
        self.lease_sec, self.retention_hours, self.poll_sec = lease_sec, retention_hours, poll_sec
        self.on_chunk = on_chunk
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cleanup = 0.0
        self.heartbeat: _Heartbeat | None = None  # the lease renewal of the job being worked on
        # Where chunks are made: this process's engine, or ahead of the runner (`scale.book.RayChunks`).
        self.chunk_source: ChunkSource = chunk_source or LocalChunks()
        # Sends the notifications of ended jobs (webhooks, uploads) in a thread of its own; None: none.
        self.notifier: Notifier | None = None

    @classmethod
    def from_settings(cls, settings: JobSettings, synthesizer: Synthesizer) -> tuple[JobStore, JobRunner]:
        """The job store of `settings` (its folder made) and a runner over it."""
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.database)
        runner = cls(
            store,
            synthesizer,
            settings.jobs_dir,
            lease_sec=settings.lease_sec,
            retention_hours=settings.retention_hours,
        )
        if settings.notify is not None:
            runner.notifier = Notifier(store, settings.notify, settings.jobs_dir)
        return store, runner

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()
        if self.notifier is not None:
            self.notifier.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self.notifier is not None:
            self.notifier.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.cleanup()
                if not self.run_once():
                    self._stop.wait(self.poll_sec)
            except Exception:  # the runner must outlive a broken job or a database hiccup
                log.exception("job runner iteration failed")
                self._stop.wait(self.poll_sec)

    def run_once(self, job_id: str | None = None) -> bool:
        """Claim one job (or `job_id`) and work on it until it ends or stops; False when there was none."""
        job = self.store.claim(self.owner, self.lease_sec, job_id)
        if job is None:
            return False
        self.heartbeat = _Heartbeat(self.store, job.id, self.owner, self.lease_sec)
        try:
            with self.heartbeat:
                self._work(job)
        finally:
            self.heartbeat = None
        return True

    def _work(self, job: Job) -> None:
        """Process a claimed job; a failure fails it, or leaves it for the next claim to retry."""
        try:
            self.process(job)
        except LeaseLost as exc:  # before BarkServeError: the job is not ours to fail, leave it alone
            log.warning("%s", exc.message)
        except (KeyboardInterrupt, SystemExit):  # keep what is done; the next run resumes at once
            self.store.release(job.id, self.owner)
            raise
        except Exception as exc:
            if is_retryable(exc):
                self._retry(job.id, exc)
            else:  # the same work would fail the same way: the job fails with the reason
                self._fail(job.id, exc.message if isinstance(exc, BarkServeError) else f"{type(exc).__name__}: {exc}")

    def _fail(self, job_id: str, message: str) -> None:
        log.error("job %s failed: %s", job_id, message)
        self.store.finish(job_id, "failed", message, owner=self.owner)

    def _retry(self, job_id: str, exc: Exception) -> None:
        """Retry the chunk that raised (the next claim resumes it) until it has had its attempts."""
        log.exception("job %s: a chunk failed and may be tried again", job_id)
        chunk = next((c for c in self.store.chunks(job_id) if not c.done), None)
        attempts = chunk.attempts if chunk is not None else 0
        if chunk is None or attempts == 0 or attempts >= MAX_CHUNK_ATTEMPTS:
            where = f"chunk {chunk.index} failed {attempts} time(s)" if chunk is not None and attempts else "failed"
            self._fail(job_id, f"{where}: {type(exc).__name__}: {exc}")
        else:
            self.store.release(job_id, self.owner)

    def process(self, job: Job) -> None:
        """Plan the job (every job is a book: a text job has one chapter), make the chunks not yet made,
        in order, checkpointing each, then assemble its files."""
        book = as_book(job, self.store.book(job.id))
        plan = plan_book(self.synth, job, book)
        units = plan.units
        texts = [segment.info.chunks[i].spoken for segment, i in units]
        if not self.store.plan_chunks(job.id, texts, owner=self.owner, chapter_chunks=plan.chapter_chunks):
            raise _lost(job.id)
        rows = self.store.chunks(job.id)
        if len(rows) != len(units):
            raise JobPlanChanged(
                f"job {job.id} was planned as {len(rows)} chunks but its text now splits into "
                f"{len(units)} (the model or barkserve changed since it started); submit it again as a new job"
            )
        files = JobFiles(self.jobs_dir, job.id)
        files.folder.mkdir(parents=True, exist_ok=True)
        self.chunk_source.start(job, units, rows, files)
        current, voice = None, plan.plans[0].voice
        for row, (segment, local) in zip(rows, units, strict=True):
            if segment is not current:  # a new voiced segment of a book starts in its own voice
                current, voice = segment, segment.voice
            if row.done and row.path:
                voice = resumed_voice(segment, files, row.index, voice)
                continue
            self.synth.gate.wait_idle()  # interactive requests first
            if self.store.get(job.id).state != "running" or self._stop.is_set():
                return  # cancelled, or the process is stopping: resume later
            voice = self._generate(segment, job.id, row.index, voice, files, local)
        self._keep_lease(job.id)
        aligner, skipped = self._aligner(job)
        warnings = assemble_book(job, book, plan, self.store.chunks(job.id), files, aligner, skipped)
        warnings = [*(job.warnings or []), *warnings]  # the book's, from submission, first
        if not self.store.finish(job.id, "succeeded", owner=self.owner, warnings=warnings):
            raise _lost(job.id)

    def _keep_lease(self, job_id: str) -> None:
        """Raise LeaseLost once the job is no longer ours (a lapsed lease taken over) or no longer running."""
        lost = self.heartbeat is not None and self.heartbeat.lost.is_set()
        if lost or not self.store.holds(job_id, self.owner):
            raise _lost(job_id)

    def _generate(
        self, plan: SynthesisPlan, job_id: str, index: int, voice: VoicePrompt, files: JobFiles, local: int
    ) -> VoicePrompt:
        """Generate and checkpoint chunk `index` of the job (chunk `local` of `plan`)."""
        if not self.store.start_chunk(job_id, index, owner=self.owner):  # still ours: checked as it is counted
            raise _lost(job_id)
        started = time.perf_counter()
        chunk = self.chunk_source.take(plan, local, voice)
        self._keep_lease(job_id)  # the job may have been taken over while this chunk was generated
        if chunk.report is not None:  # written before the checkpoint: a done chunk always has its record
            files.write_quality(index, chunk.report.to_dict())
        path = files.write_chunk(index, chunk.audio, chunk.generated)
        seconds = len(chunk.audio) / plan.info.sample_rate
        took = time.perf_counter() - started
        if not self.store.finish_chunk(job_id, index, str(path), len(chunk.audio), seconds, took, owner=self.owner):
            raise _lost(job_id)
        if self.on_chunk is not None:
            self.on_chunk(self.store.get(job_id))
        return chunk.next_voice

    def _aligner(self, job: Job) -> tuple[Aligner | None, list[str]]:
        """The aligner of a job with word captions (checked when it was submitted), or why there is none."""
        if not job.caption_words:
            return None, []
        try:
            return aligner_for(self.synth.config.scorers), []
        except BarkServeError as exc:  # the server restarted with another align_model: sentence timing stays
            return None, [f"word timing was skipped: {exc.message}; the captions keep sentence timing"]

    def cleanup(self) -> None:
        """Remove finished jobs older than the retention time, files first, then rows."""
        if time.monotonic() - self._last_cleanup < CLEANUP_EVERY_SEC:
            return
        self._last_cleanup = time.monotonic()
        for job_id in self.store.expired(utcnow() - dt.timedelta(hours=self.retention_hours)):
            shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
            self.store.delete(job_id)
            log.info("removed expired job %s", job_id)


class _Heartbeat:
    """Renews a job's lease while it runs, so a crashed process's jobs are taken over later."""

    def __init__(self, store: JobStore, job_id: str, owner: str, lease_sec: float) -> None:
        self.args = (store, job_id, owner, lease_sec)
        self.lost = threading.Event()  # set once a renewal finds the job taken over or no longer running
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def renew(self) -> bool:
        """Extend the lease once; False, and `lost` set, when the job is no longer ours to work on."""
        store, job_id, owner, lease_sec = self.args
        if store.renew(job_id, owner, lease_sec):
            return True
        self.lost.set()
        return False

    def _beat(self) -> None:
        lease_sec = self.args[3]
        while not self._done.wait(lease_sec / 3) and not self.lost.is_set():
            try:
                self.renew()
            except Exception:  # a database hiccup: the lease lasts until the next beat
                log.exception("could not renew the lease of job %s", self.args[1])


def _lost(job_id: str) -> LeaseLost:
    """The error that stops work on a job whose lease this worker no longer holds."""
    return LeaseLost(f"job {job_id} was taken over by another worker or stopped running; this worker left it")
