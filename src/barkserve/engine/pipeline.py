"""All tasks in flight and their stages; one `iterate` advances every stage by one step.

Stages of different tasks overlap: in one iteration new tasks are prefilled in the semantic stage,
every semantic row makes a token, every coarse row makes a token (after a window prefill where
its window starts), and tasks that finished coarse are handed to the fine worker (engine/finisher.py),
which runs them through the fine stage and the codec together on its own thread while the decode
loop goes on (`overlap_fine`; with it off, they run here, inside the iteration, as before).

Prefills are still inside the loop. A new row's semantic prefill (257 positions) and each coarse
window's prefill (up to ~890 positions) run in the iteration that admits them, so they lengthen that
one step for every row. The design to bound that, not built yet: split a prefill into chunks of at
most C positions (C sized so a chunk costs about one decode step), run one chunk per iteration
beside the decode step of the other rows, and keep the row out of the decode batch until its last
chunk has written the cache (a "prefilling" state per slot; `gpt.causal_prefill` would take a start
position and attend to the cached positions before it). The decode step then never waits for more
than one chunk, whatever the number of rows joining (docs/engine-overlap.md has a second way).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from barkserve.engine.finisher import FineWorker
from barkserve.engine.inputs import BarkGeometry, fine_row
from barkserve.engine.lora import AdapterSet
from barkserve.engine.stages.coarse import CoarseStage
from barkserve.engine.stages.codec import decode_audio
from barkserve.engine.stages.fine import run_fine
from barkserve.engine.stages.semantic import SemanticStage
from barkserve.engine.task import GenerationTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageModels:
    """The sub-models the engine runs, named as `BarkModel` names them."""

    semantic: Any
    coarse_acoustics: Any
    fine_acoustics: Any
    codec_model: Any


class Pipeline:
    """The semantic and coarse stages, the queues between them, and the fine + codec step."""

    def __init__(
        self,
        models: StageModels,
        geo: BarkGeometry,
        max_batch: int,
        device: Any,
        dtype: Any,
        sample_rate: int,
        decode: str = "eager",
        adapters: AdapterSet | None = None,
        overlap_fine: bool = True,
    ) -> None:
        self.models, self.geo, self.max_batch, self.sample_rate = models, geo, max_batch, sample_rate
        # The LoRA adapters the stages' models carry (engine/lora.py): each stage sets its rows' entries.
        self.adapters = adapters or AdapterSet([])
        rows = self.adapters.rows if self.adapters else {}
        self.semantic = SemanticStage(models.semantic, geo, max_batch, device, dtype, decode, rows.get("semantic"))
        self.coarse = CoarseStage(models.coarse_acoustics, geo, max_batch, device, dtype, decode, rows.get("coarse"))
        self.fine_adapters = rows.get("fine")
        self.to_coarse: deque[GenerationTask] = deque()
        self.to_fine: list[GenerationTask] = []
        # A non-causal codec would hear the padding of a batch: decode such a one row at a time.
        # Fine + codec on a thread of their own (None: inside `iterate`, stalling the decode steps).
        self.finisher = FineWorker(self._finish, device) if overlap_fine else None

    @property
    def busy(self) -> bool:
        return bool(self.semantic.rows or self.coarse.rows or self.to_coarse or self.to_fine)

    @property
    def free(self) -> int:
        """How many new tasks the semantic stage can take now."""
        return self.semantic.free

    @property
    def running(self) -> int:
        """Rows in the semantic and coarse stages now (read by the metrics scrape, without a lock)."""
        return len(self.semantic.rows) + len(self.coarse.rows)

    def iterate(self, new_tasks: list[GenerationTask]) -> None:
        """Advance every stage by one step, admitting `new_tasks` into the semantic stage."""
        self.drop_cancelled()
        self._semantic(new_tasks)
        self._coarse()
        if self.to_fine:
            tasks, self.to_fine = self.to_fine, []
            if self.finisher is not None:
                self.finisher.put(tasks)
            else:
                self._finish(tasks)

    def close(self) -> None:
        """Let the fine worker finish the tasks handed to it and stop its thread."""
        if self.finisher is not None:
            self.finisher.close()

    def drop_cancelled(self) -> None:
        """Remove cancelled tasks from every stage; the rows left are untouched."""
        for slot in range(len(self.semantic.rows) - 1, -1, -1):
            if self.semantic.rows[slot].cancelled:
                self.semantic.remove(slot).drop()
        for slot in range(len(self.coarse.rows) - 1, -1, -1):
            if self.coarse.rows[slot].task.cancelled:
                self.coarse.remove(slot).task.drop()
        for queue in (self.to_coarse, self.to_fine):
            for task in [t for t in queue if t.cancelled]:
                queue.remove(task)
                task.drop()

    def fail_all(self, error: BaseException) -> None:
        """Last resort after an unexpected error: fail every task in flight and empty the stages."""
        tasks = list(self.semantic.rows) + [r.task for r in self.coarse.rows] + list(self.to_coarse) + self.to_fine
        self._reset_semantic()
        self._reset_coarse()
        self.to_coarse.clear()
        self.to_fine = []
        for task in tasks:
            task.fail(error)

    def _semantic(self, new_tasks: list[GenerationTask]) -> None:
        rows = list(self.semantic.rows)
        done = self._guard("semantic", rows, self.semantic.step, reset=self._reset_semantic)
        ready, ids = [], []
        for task in new_tasks:
            try:
                ids.append(self.semantic.prepare(task))
                ready.append(task)
            except Exception as exc:  # one bad request fails alone
                task.fail(exc)
        done += self._guard("semantic", ready, self.semantic.admit, ready, ids, reset=self._reset_semantic)
        self.to_coarse.extend(done)

    def _coarse(self) -> None:
        while self.to_coarse and self.coarse.free:
            task = self.to_coarse.popleft()
            try:
                self.to_fine.extend(self.coarse.admit([task]))
            except Exception as exc:  # one bad request fails alone
                task.fail(exc)
        rows = [r.task for r in self.coarse.rows]
        self.to_fine.extend(self._guard("coarse", rows, self.coarse.step, reset=self._reset_coarse))

    def _finish(self, tasks: list[GenerationTask]) -> None:
        """Fine + codec of a batch; if it raises, its tasks fail alone (on whichever thread runs it)."""
        self._guard("fine_codec", tasks, self._fine_and_codec, tasks)

    def _fine_and_codec(self, tasks: list[GenerationTask]) -> None:
        import torch

        device = self.coarse.device
        with _timed(tasks, "fine"):
            rows = [fine_row(self.geo, torch.as_tensor(t.coarse, device=device), t.request.voice) for t in tasks]
            samplers = [t.fine_sampler for t in tasks]
            entries = [t.adapter for t in tasks]
            run_fine(self.models.fine_acoustics, self.geo, rows, samplers, self.max_batch, self.fine_adapters, entries)
            for task, row in zip(tasks, rows, strict=True):
                task.fine = row.output()
        with _timed(tasks, "codec"):
            coded = [t for t in tasks if t.fine is not None and t.fine.shape[1] > 0]
            audio = decode_audio(self.models.codec_model, [t.fine for t in coded])  # type: ignore[misc]
        waves = dict(zip(map(id, coded), audio, strict=True))
        for task in tasks:
            task.settle(waves.get(id(task), np.zeros(0, dtype=np.float32)), self.sample_rate)
        for task in tasks:  # only now wake callers: each sees every task of the batch finished
            task.release()

    def _guard(
        self, stage: str, tasks: list[GenerationTask], fn: Any, *args: Any, reset: Any = None
    ) -> list[GenerationTask]:
        """Run one batched stage call; if it raises, fail the tasks of that stage only."""
        try:
            with _timed(tasks, stage):
                return list(fn(*args) or [])
        except Exception as exc:
            dropped = reset() if reset is not None else []
            failed = {id(t): t for t in [*tasks, *dropped]}
            log.exception("%s stage failed; failing its %d request(s)", stage, len(failed))
            for task in failed.values():
                task.fail(exc)
            return []

    def _reset_semantic(self) -> list[GenerationTask]:
        return [self.semantic.remove(len(self.semantic.rows) - 1) for _ in range(len(self.semantic.rows))]

    def _reset_coarse(self) -> list[GenerationTask]:
        return [self.coarse.remove(len(self.coarse.rows) - 1).task for _ in range(len(self.coarse.rows))]


@contextmanager
def _timed(tasks: list[GenerationTask], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.stage_seconds[stage] += elapsed
