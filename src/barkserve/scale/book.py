"""`book --ray`: a job's chunks generated ahead on a pool of Ray actors; the job runner still records them.

What may run at once without changing a chunk's audio (each chunk has its own seed):
- with a fixed voice and no quality control, every chunk: each one's request is its text, its
  segment's voice and its seed;
- with `carry_history` or `qc`, a segment's chunks depend on each other (the history carried to the
  next chunk; quality control's reference voice, taken from the segment's first accepted chunk in
  this run), so each segment's pending chunks run in order on one actor, and segments (each starting
  from its own voice) run at once.

The runner (`JobRunner.process`) walks the chunks in order as before: it takes each chunk's audio from
here instead of from its own engine, writes the checkpoint and marks it done in the job store, which
stays the one record of progress. A chunk is finished once recorded there; a run killed at any point
resumes from the store and never sends a finished chunk again. Work made ahead but not yet recorded
when the process dies is made again (the same audio: same seed, same voice).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from barkserve.config import ServerConfig
from barkserve.errors import BarkServeError, JobPlanChanged
from barkserve.jobs.chunks import Unit, resumed_voice
from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Job, JobChunk
from barkserve.scale.cluster import require_ray
from barkserve.synthesizer import ChunkAudio, SynthesisPlan, Synthesizer
from barkserve.voices import VoicePrompt

# How long a failed chunk waits for Ray to start its dead actor again before the job's retry.
RESTART_WAIT_SEC = 120.0


@dataclass(frozen=True, eq=False)
class Run:
    """Chunks of one segment made in order on one actor, from `voice` (the first's voice prompt)."""

    segment: int  # the plan's position in the job
    chunks: tuple[int, ...]  # indices within the plan
    voice: VoicePrompt


class ChunkWorker:
    """A Ray actor: one Synthesizer (one model load, one batched engine) shared by the runs it is given."""

    def __init__(self, config: ServerConfig) -> None:
        self.synth = Synthesizer(config)

    def run(self, request: dict[str, Any], chunks: list[int], voice: VoicePrompt) -> Iterator[ChunkAudio]:
        """Plan the segment as the runner did, then make `chunks` in order, yielding each as it is done."""
        plan = self.synth.plan(request["text"], request["voice"], request["model"], request["options"])
        if [c.spoken for c in plan.info.chunks] != request["spoken"]:
            raise JobPlanChanged(
                "a Ray worker splits this text differently from the job's plan (another barkserve version or "
                "model files on that node); install the same on every node"
            )
        for index in chunks:
            chunk = plan.run_chunk(index, voice)
            voice = chunk.next_voice
            yield chunk


def plan_runs(units: Sequence[Unit], rows: Sequence[JobChunk], files: JobFiles) -> list[Run]:
    """The chunks still to make, as runs that may go at once, in the job's order (see the module's doc).

    A segment that depends on its order and whose pending chunks are not all at its end (never the
    case for a job the runner made, which records chunks in order) is left out: the runner makes it.
    """
    segments: dict[SynthesisPlan, list[tuple[JobChunk, int]]] = {}
    for row, (plan, local) in zip(rows, units, strict=True):
        segments.setdefault(plan, []).append((row, local))
    runs: list[Run] = []
    for number, (plan, chunks) in enumerate(segments.items()):
        pending = [local for row, local in chunks if not (row.done and row.path)]
        if not pending:
            continue
        opts = plan.info.options
        if not opts.carry_history and opts.qc is None:
            runs.extend(Run(number, (local,), plan.voice) for local in pending)
            continue
        first = len(chunks) - len(pending)
        if pending != [local for _, local in chunks[first:]]:
            continue
        voice = plan.voice
        for row, _ in chunks[:first]:  # the voice after the finished chunks, as the runner carries it
            voice = resumed_voice(plan, files, row.index, voice)
        runs.append(Run(number, tuple(pending), voice))
    return runs


@dataclass
class _Stream:
    """A run in flight: the refs of its chunks as the actor yields them, and how many are still to come."""

    refs: Any  # ray's ObjectRefGenerator
    left: int


@dataclass
class RayChunks:
    """The runner's `chunk_source` on `replicas` engine actors (call `scale.connect` first); close it after."""

    config: ServerConfig
    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    window: int = 0  # runs in flight at once; 0: two per actor
    worker: type[ChunkWorker] = ChunkWorker
    sent: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # (segment, chunks) per run sent
    made_here: list[tuple[int, int]] = field(default_factory=list)  # (segment, chunk) the runner's engine made

    def __post_init__(self) -> None:
        self.ray = require_ray()
        # Runs share an actor's batched engine; a killed actor is started again (the job's chunk is retried).
        actor = self.ray.remote(self.worker).options(
            num_cpus=self.cpus_per_replica,
            num_gpus=self.gpus_per_replica,
            max_restarts=-1,
            max_concurrency=self.config.engine.max_batch_size,
        )
        self.actors = [actor.remote(self.config) for _ in range(self.replicas)]
        self.window = self.window or 2 * self.replicas
        self._queue: collections.deque[Run] = collections.deque()
        self._runs: dict[tuple[int, int], Run] = {}
        self._streams: dict[Run, _Stream] = {}
        self._plans: list[SynthesisPlan] = []
        self._requests: list[dict[str, Any]] = []
        self._next = 0

    def start(self, job: Job, units: Sequence[Unit], rows: Sequence[JobChunk], files: JobFiles) -> None:
        """Send the job's pending chunks (the runner calls this before its loop; a new call drops the old work)."""
        self.stop()
        self._plans = list(dict.fromkeys(plan for plan, _ in units))
        self._requests = [_request(plan) for plan in self._plans]
        runs = plan_runs(units, rows, files)
        self._queue = collections.deque(runs)
        self._runs = {(run.segment, local): run for run in runs for local in run.chunks}
        self._fill()

    def take(self, plan: SynthesisPlan, index: int, voice: VoicePrompt) -> ChunkAudio:
        """Chunk `index` of `plan`, made with `voice`: from its actor, or here when it was not sent."""
        segment = self._plans.index(plan)
        run = self._runs.pop((segment, index), None)
        if run is None:
            self.made_here.append((segment, index))
            return plan.run_chunk(index, voice)
        while run not in self._streams:  # runs are taken in the order they were sent: it is next
            self._send(self._queue.popleft())
        stream = self._streams[run]
        try:
            chunk: ChunkAudio = self.ray.get(next(stream.refs))
        except self.ray.exceptions.RayTaskError as exc:
            self._streams.pop(run)
            if isinstance(exc.cause, BarkServeError):
                raise exc.cause from None  # the same error as on one machine: the job fails with it
            raise
        except Exception:
            self._streams.pop(run)  # the actor died: the runner retries the chunk (a new `start`) ...
            self._wait_for_actors()  # ... once Ray has started it again, or the retry would meet the same
            raise
        stream.left -= 1
        if not stream.left:
            del self._streams[run]
            self._fill()
        return chunk

    def _wait_for_actors(self) -> None:
        deadline = time.monotonic() + RESTART_WAIT_SEC
        for actor in self.actors:
            while time.monotonic() < deadline:
                try:
                    self.ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
                    break
                except Exception:  # still restarting
                    time.sleep(0.5)

    def _fill(self) -> None:
        while self._queue and len(self._streams) < self.window:
            self._send(self._queue.popleft())

    def _send(self, run: Run) -> None:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        refs = actor.run.options(num_returns="streaming").remote(
            self._requests[run.segment], list(run.chunks), run.voice
        )
        self._streams[run] = _Stream(refs, len(run.chunks))
        self.sent.append((run.segment, run.chunks))

    def stop(self) -> None:
        """Drop the runs in flight (their results are never read)."""
        for stream in self._streams.values():
            with contextlib.suppress(Exception):
                self.ray.cancel(stream.refs)
        self._streams.clear()
        self._queue.clear()
        self._runs.clear()

    def close(self) -> None:
        self.stop()
        for actor in self.actors:
            self.ray.kill(actor)

    def __enter__(self) -> RayChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _request(plan: SynthesisPlan) -> dict[str, Any]:
    """What an actor needs to plan a segment as the runner did (the seed is in the options)."""
    info = plan.info
    return {
        "text": info.text,
        "voice": info.voice,
        "model": info.model,
        "options": info.options,
        "spoken": [c.spoken for c in info.chunks],
    }
