"""All jobs in flight and their stages; one `iterate` advances every stage by one step.

Stages of different jobs overlap: in one iteration new jobs are prefilled in the semantic stage,
every semantic row makes a token, every coarse row makes a token (after a window prefill where
its window starts), and jobs that finished coarse go through the fine stage and the codec together.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from barkserve.engine.coarse import CoarseStage
from barkserve.engine.fine import decode_audio, run_fine
from barkserve.engine.jobs import Job
from barkserve.engine.plan import BarkGeometry, fine_row
from barkserve.engine.semantic import SemanticStage
from barkserve.errors import GenerationCancelled

log = logging.getLogger(__name__)


class Pipeline:
    """The semantic and coarse stages, the queues between them, and the fine + codec step."""

    def __init__(self, models: Any, geo: BarkGeometry, max_batch: int, device: Any, dtype: Any, sample_rate: int):
        self.models, self.geo, self.max_batch, self.sample_rate = models, geo, max_batch, sample_rate
        self.semantic = SemanticStage(models.semantic, geo, max_batch, device, dtype)
        self.coarse = CoarseStage(models.coarse_acoustics, geo, max_batch, device, dtype)
        self.to_coarse: deque[Job] = deque()
        self.to_fine: list[Job] = []
        # A non-causal codec would hear the padding of a batch: decode such a one row at a time.
        self.codec_batch = max_batch if getattr(models.codec_model.config, "use_causal_conv", False) else 1

    @property
    def busy(self) -> bool:
        return bool(self.semantic.rows or self.coarse.rows or self.to_coarse or self.to_fine)

    @property
    def free(self) -> int:
        """How many new jobs the semantic stage can take now."""
        return self.semantic.free

    def iterate(self, new_jobs: list[Job]) -> None:
        """Advance every stage by one step, admitting `new_jobs` into the semantic stage."""
        self.drop_cancelled()
        self._semantic(new_jobs)
        self._coarse()
        if self.to_fine:
            jobs, self.to_fine = self.to_fine, []
            self._guard("fine_codec", jobs, self._fine_and_codec, jobs)

    def drop_cancelled(self) -> None:
        """Remove cancelled jobs from every stage; the rows left are untouched."""
        for slot in range(len(self.semantic.rows) - 1, -1, -1):
            if self.semantic.rows[slot].cancelled:
                _cancelled(self.semantic.remove(slot))
        for slot in range(len(self.coarse.rows) - 1, -1, -1):
            if self.coarse.rows[slot].job.cancelled:
                _cancelled(self.coarse.remove(slot).job)
        for queue in (self.to_coarse, self.to_fine):
            for job in [j for j in queue if j.cancelled]:
                queue.remove(job)
                _cancelled(job)

    def fail_all(self, error: BaseException) -> None:
        """Last resort after an unexpected error: fail every job in flight and empty the stages."""
        jobs = list(self.semantic.rows) + [r.job for r in self.coarse.rows] + list(self.to_coarse) + self.to_fine
        self._reset_semantic()
        self._reset_coarse()
        self.to_coarse.clear()
        self.to_fine = []
        for job in jobs:
            job.fail(error)

    def _semantic(self, new_jobs: list[Job]) -> None:
        rows = list(self.semantic.rows)
        done = self._guard("semantic", rows, self.semantic.step, reset=self._reset_semantic)
        ready, ids = [], []
        for job in new_jobs:
            try:
                ids.append(self.semantic.prepare(job))
                ready.append(job)
            except Exception as exc:  # one bad request fails alone
                job.fail(exc)
        done += self._guard("semantic", ready, self.semantic.admit, ready, ids, reset=self._reset_semantic)
        self.to_coarse.extend(done)

    def _coarse(self) -> None:
        while self.to_coarse and self.coarse.free:
            job = self.to_coarse.popleft()
            try:
                self.to_fine.extend(self.coarse.admit([job]))
            except Exception as exc:  # one bad request fails alone
                job.fail(exc)
        rows = [r.job for r in self.coarse.rows]
        self.to_fine.extend(self._guard("coarse", rows, self.coarse.step, reset=self._reset_coarse))

    def _fine_and_codec(self, jobs: list[Job]) -> None:
        import torch

        device = self.coarse.device
        with _timed(jobs, "fine"):
            rows = [fine_row(self.geo, torch.as_tensor(j.coarse, device=device), j.request.voice) for j in jobs]
            samplers = [(j.fine_temp, j.generator) for j in jobs]
            run_fine(self.models.fine_acoustics, self.geo, rows, samplers, self.max_batch)
            for job, row in zip(jobs, rows, strict=True):
                job.fine = row.output()
        with _timed(jobs, "codec"):
            coded = [j for j in jobs if j.fine is not None and j.fine.shape[1] > 0]
            audio = decode_audio(self.models.codec_model, [j.fine for j in coded], self.codec_batch)  # type: ignore[misc]
        waves = dict(zip(map(id, coded), audio, strict=True))
        for job in jobs:
            job.finish(waves.get(id(job), np.zeros(0, dtype=np.float32)), self.sample_rate)

    def _guard(self, stage: str, jobs: list[Job], fn: Any, *args: Any, reset: Any = None) -> list[Job]:
        """Run one batched stage call; if it raises, fail the jobs of that stage only."""
        try:
            with _timed(jobs, stage):
                return list(fn(*args) or [])
        except Exception as exc:
            dropped = reset() if reset is not None else []
            failed = {id(j): j for j in [*jobs, *dropped]}
            log.exception("%s stage failed; failing its %d request(s)", stage, len(failed))
            for job in failed.values():
                job.fail(exc)
            return []

    def _reset_semantic(self) -> list[Job]:
        return [self.semantic.remove(len(self.semantic.rows) - 1) for _ in range(len(self.semantic.rows))]

    def _reset_coarse(self) -> list[Job]:
        return [self.coarse.remove(len(self.coarse.rows) - 1).job for _ in range(len(self.coarse.rows))]


def _cancelled(job: Job) -> None:
    job.fail(GenerationCancelled("the request was cancelled before its audio was ready"))


@contextmanager
def _timed(jobs: list[Job], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    for job in jobs:
        job.stage_seconds[stage] += elapsed
