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
from typing import Any

import numpy as np

from barkserve.audio.files import atomic_write
from barkserve.captions import Aligner, aligner_for
from barkserve.config import ServerConfig
from barkserve.engine import GeneratedAudio
from barkserve.errors import BarkServeError, JobPlanChanged, LeaseLost, NoSpeech
from barkserve.jobs.book import assemble_book, plan_book, plan_cues, word_times
from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Job, JobStore, utcnow
from barkserve.synthesizer import SynthesisPlan, Synthesizer
from barkserve.voices import VoicePrompt

log = logging.getLogger(__name__)
CLEANUP_EVERY_SEC = 60.0
# Generations of one chunk that may fail with an unexpected error (CUDA out of memory, a bug)
# before the job fails; a barkserve or OS error fails it at once, since a retry would fail again.
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
    ) -> None:
        self.store, self.synth, self.jobs_dir = store, synthesizer, jobs_dir
        self.lease_sec, self.retention_hours, self.poll_sec = lease_sec, retention_hours, poll_sec
        self.on_chunk = on_chunk
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cleanup = 0.0
        self.heartbeat: _Heartbeat | None = None  # the lease renewal of the job being worked on
        # Where chunks are made when not by this process's engine (`scale.book.RayChunks`, `book --ray`).
        self.chunk_source: Any = None

    @classmethod
    def from_config(cls, config: ServerConfig, synthesizer: Synthesizer) -> tuple[JobStore, JobRunner]:
        """The job store of `config` (its folder made) and a runner over it."""
        config.jobs_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(config.database)
        runner = cls(
            store,
            synthesizer,
            config.jobs_dir,
            lease_sec=config.job_lease_sec,
            retention_hours=config.job_retention_hours,
        )
        return store, runner

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
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
        except (BarkServeError, OSError) as exc:
            self._fail(job.id, exc.message if isinstance(exc, BarkServeError) else f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            self._unexpected(job.id, exc)

    def _fail(self, job_id: str, message: str) -> None:
        log.error("job %s failed: %s", job_id, message)
        self.store.finish(job_id, "failed", message, owner=self.owner)

    def _unexpected(self, job_id: str, exc: Exception) -> None:
        """Retry the chunk that raised (the next claim resumes it) until it has had its attempts."""
        log.exception("job %s: unexpected error", job_id)
        chunk = next((c for c in self.store.chunks(job_id) if not c.done), None)
        attempts = chunk.attempts if chunk is not None else 0
        if chunk is None or attempts == 0 or attempts >= MAX_CHUNK_ATTEMPTS:
            where = f"chunk {chunk.index} failed {attempts} time(s)" if chunk is not None and attempts else "failed"
            self._fail(job_id, f"{where}: {type(exc).__name__}: {exc}")
        else:
            self.store.release(job_id, self.owner)

    def process(self, job: Job) -> None:
        book = self.store.book(job.id)
        if book is None:
            plans = [
                self.synth.plan(
                    job.text,
                    voice=job.voice,
                    model=job.model,
                    options=job.options,
                    max_chars=self.synth.config.max_job_chars,
                )
            ]
            chapter_chunks = None
        else:
            book_plan = plan_book(self.synth, job, book)
            plans, chapter_chunks = list(book_plan.plans), book_plan.chapter_chunks
        # Each chunk of the job: the synthesis it belongs to and its index there.
        units = [(plan, i) for plan in plans for i in range(len(plan.token_ids))]
        texts = [plan.info.chunks[i].spoken for plan, i in units]
        if not self.store.plan_chunks(job.id, texts, owner=self.owner, chapter_chunks=chapter_chunks):
            raise _lost(job.id)
        rows = self.store.chunks(job.id)
        if len(rows) != len(units):
            raise JobPlanChanged(
                f"job {job.id} was planned as {len(rows)} chunks but its text now splits into "
                f"{len(units)} (the model or barkserve changed since it started); submit it again as a new job"
            )
        files = JobFiles(self.jobs_dir, job.id)
        files.folder.mkdir(parents=True, exist_ok=True)
        if self.chunk_source is not None:
            self.chunk_source.start(job, units, rows, self._carried)
        current, voice = None, plans[0].voice
        for row, (plan, local) in zip(rows, units, strict=True):
            if plan is not current:  # a new voiced segment of a book starts in its own voice
                current, voice = plan, plan.voice
            if row.done and row.path:
                voice = self._carried(plan, Path(row.path), voice)
                continue
            self.synth.gate.wait_idle()  # interactive requests first
            if self.store.get(job.id).state != "running" or self._stop.is_set():
                return  # cancelled, or the process is stopping: resume later
            self._keep_lease(job.id)
            voice = self._generate(plan, job.id, row.index, voice, files, local)
        self._keep_lease(job.id)
        aligner, skipped = self._aligner(job)
        if book is None:
            warnings = self._assemble(job, plans[0], files, aligner, skipped)
        else:
            warnings = assemble_book(job, book, book_plan, self.store.chunks(job.id), files, aligner, skipped)
        warnings = [*(job.warnings or []), *warnings]  # the book's, from submission, first
        if not self.store.finish(job.id, "succeeded", owner=self.owner, warnings=warnings):
            raise _lost(job.id)

    def _keep_lease(self, job_id: str) -> None:
        """Raise LeaseLost once the job is no longer ours (a lapsed lease taken over) or no longer running."""
        lost = self.heartbeat is not None and self.heartbeat.lost.is_set()
        if lost or not self.store.holds(job_id, self.owner):
            raise _lost(job_id)

    def _generate(
        self,
        plan: SynthesisPlan,
        job_id: str,
        index: int,
        voice: VoicePrompt,
        files: JobFiles,
        local: int | None = None,
    ) -> VoicePrompt:
        """Generate and checkpoint chunk `index` of the job (chunk `local` of `plan`; the same for a text job)."""
        self.store.start_chunk(job_id, index)
        started = time.perf_counter()
        local = index if local is None else local
        source = self.chunk_source
        chunk = plan.run_chunk(local, voice) if source is None else source.take(plan, local, voice)
        self._keep_lease(job_id)  # the job may have been taken over while this chunk was generated
        out = chunk.generated
        path = files.chunk(index)
        arrays = {"audio": chunk.audio}
        if out.semantic is not None and out.fine is not None:
            arrays |= {"semantic": out.semantic, "fine": out.fine}
        if chunk.report is not None:  # written before the checkpoint: a done chunk always has its record
            files.write_quality(index, chunk.report.to_dict())
        try:
            _atomic_npz(path, arrays)
        except OSError as exc:  # disk full, permissions: the job fails with the reason
            raise OSError(f"could not write chunk {index} of job {job_id} to {path}: {exc.strerror or exc}") from exc
        seconds = len(chunk.audio) / plan.info.sample_rate
        took = time.perf_counter() - started
        if not self.store.finish_chunk(job_id, index, str(path), len(chunk.audio), seconds, took, owner=self.owner):
            raise _lost(job_id)
        if self.on_chunk is not None:
            self.on_chunk(self.store.get(job_id))
        return chunk.next_voice

    def _carried(self, plan: SynthesisPlan, path: Path, voice: VoicePrompt) -> VoicePrompt:
        """The next chunk's voice after a chunk finished in an earlier run (its saved history)."""
        if not plan.info.options.carry_history:
            return voice
        with np.load(path) as data:
            if "semantic" not in data.files:
                return voice
            saved = GeneratedAudio(np.empty(0, np.float32), plan.info.sample_rate, data["semantic"], data["fine"])
            return saved.as_history(voice)

    def _aligner(self, job: Job) -> tuple[Aligner | None, list[str]]:
        """The aligner of a job with word captions (checked when it was submitted), or why there is none."""
        if not job.caption_words:
            return None, []
        try:
            return aligner_for(self.synth.config), []
        except BarkServeError as exc:  # the server restarted with another align_model: sentence timing stays
            return None, [f"word timing was skipped: {exc.message}; the captions keep sentence timing"]

    def _assemble(
        self, job: Job, plan: SynthesisPlan, files: JobFiles, aligner: Aligner | None, skipped: list[str]
    ) -> list[str]:
        """Join the chunk files in order into final.flac and the job's own format, and write its captions;
        the warnings of word timing (after `skipped`, why there is no aligner)."""
        pieces = [_load_audio(Path(row.path or "")) for row in self.store.chunks(job.id)]
        audio = np.concatenate(pieces)
        if len(audio) == 0:  # every chunk ended before any sound: no playable file to make
            raise NoSpeech()
        rate = plan.info.sample_rate
        files.write_final(audio, rate, "flac")
        cues, found = word_times(audio, rate, plan_cues(plan, pieces), aligner)
        warnings = [*skipped, *found]
        files.write_captions(cues, warnings)
        files.write_final(audio, rate, job.format)
        return warnings

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


def _load_audio(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data["audio"], dtype=np.float32)


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
