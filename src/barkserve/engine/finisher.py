"""The fine stage and the codec off the decode loop: a worker thread (with its own CUDA stream on a GPU).

Tasks that finish the coarse stage are handed to `FineWorker.put`; the worker runs them through
fine + codec in batches while the engine thread goes on stepping the semantic and coarse stages.
Tasks handed over while a batch runs form the next batch together.

Streams (CUDA): the worker's kernels go to a stream of its own, so they queue beside the decode
steps instead of behind them (torch's streams are non-blocking: the default stream the decode loop
uses does not serialise with it). Nothing on the device crosses between the streams: a task arrives
with its coarse tokens as a host array, and leaves with its audio as a host array (`task.settle`
copies the fine codes and the waveform to the host, which waits for the worker's stream) before
any caller is woken. Each batch still starts after the work the decode loop had queued so far
(`wait_stream`), so a device tensor handed over in future is safe as well. The decode loop's
CUDA graphs are captured with `capture_error_mode="thread_local"` (engine/decode.py), which lets
this thread keep launching kernels during a capture.

On a CPU the same code runs on the thread alone: torch releases the GIL inside its operators, so
the two threads' forward passes share the cores.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from barkserve.engine.task import GenerationTask

log = logging.getLogger(__name__)


class FineWorker:
    """Runs `finish(tasks)` (fine + codec of a batch; it settles or fails each task) on its own thread.

    `finish` must not raise for a failing batch (the pipeline's guard fails the batch's tasks); should
    it raise all the same, the tasks of that batch that are not finished fail and the worker goes on.
    """

    def __init__(self, finish: Callable[[list[GenerationTask]], None], device: Any) -> None:
        self._finish = finish
        self._device = torch.device(device)
        self._queue: list[GenerationTask] = []
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, tasks: list[GenerationTask]) -> None:
        """Hand over tasks that finished the coarse stage; the worker thread starts on first use."""
        if not tasks:
            return
        with self._cond:
            if self._closing:  # the engine thread closes the worker last: not reached in serving
                raise RuntimeError("the fine worker is closed")
            self._queue.extend(tasks)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="barkserve-fine", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def close(self) -> None:
        """Finish the tasks handed over so far, then stop the thread (the engine's `close` lets the
        requests in flight finish: these are in flight)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        stream = torch.cuda.Stream(self._device) if self._device.type == "cuda" else None
        on_stream = torch.cuda.stream(stream) if stream is not None else nullcontext()
        with torch.inference_mode(), on_stream:
            while True:
                tasks = self._next_batch()
                if tasks is None:
                    return
                if stream is not None:
                    stream.wait_stream(torch.cuda.default_stream(self._device))
                try:
                    self._finish(tasks)
                except Exception as exc:  # the guard failed to fail the batch: do it here, keep serving
                    log.exception("fine worker batch failed")
                    for task in tasks:
                        if not task.finished:
                            task.fail(exc)

    def _next_batch(self) -> list[GenerationTask] | None:
        """Every task handed over so far, cancelled ones failed; None once closing and nothing is left."""
        with self._cond:
            while True:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return None
                tasks, self._queue = self._queue, []
                live = []
                for task in tasks:
                    if task.cancelled:
                        task.drop()
                    else:
                        live.append(task)
                if live:
                    return live
