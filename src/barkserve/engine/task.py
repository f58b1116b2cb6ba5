"""One request's life inside the batched engine: its state per stage, its generator, its result."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from barkserve.engine.base import GeneratedAudio, GenerationRequest
from barkserve.engine.sampling import Sampler
from barkserve.errors import GenerationCancelled


@dataclass(eq=False)
class GenerationTask:
    """A request on its way through semantic -> coarse -> fine -> codec."""

    request: GenerationRequest
    generator: torch.Generator
    submitted: float = field(default_factory=time.perf_counter)
    adapter: int = 0  # the LoRA bank entry of the request's adapter (engine/lora.py); 0: none
    semantic: list[int] = field(default_factory=list)  # generated semantic tokens, no end-of-speech
    coarse: np.ndarray | None = None  # [L] interleaved coarse tokens once the coarse stage is done
    fine: torch.Tensor | None = None  # [8, frames] once the fine stage is done
    # Seconds of stage work this task took part in (shared with the rows it was batched with).
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    result: GeneratedAudio | None = None
    error: BaseException | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _cancelled: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, request: GenerationRequest, device: Any, adapter: int = 0) -> GenerationTask:
        if request.options.seed is None:
            raise ValueError("GenerationRequest.options.seed must be fixed before generation")
        generator = torch.Generator(device=device)
        generator.manual_seed(request.options.seed)
        return cls(request=request, generator=generator, adapter=adapter)

    @property
    def text_temp(self) -> float:
        return float(self.request.options.text_temp)

    @property
    def waveform_temp(self) -> float:
        return float(self.request.options.waveform_temp)

    @property
    def fine_temp(self) -> float:
        """transformers' fine stage takes the argmax at temperature 1.0 too; 0 means argmax here."""
        temp = self.waveform_temp
        return 0.0 if temp == 1.0 else temp

    @property
    def text_sampler(self) -> Sampler:
        return Sampler(self.text_temp, self.generator)

    @property
    def waveform_sampler(self) -> Sampler:
        return Sampler(self.waveform_temp, self.generator)

    @property
    def fine_sampler(self) -> Sampler:
        return Sampler(self.fine_temp, self.generator)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def finished(self) -> bool:
        """True once the audio is settled (or the task failed), even before waiting callers are woken."""
        return self._done.is_set() or self.result is not None or self.error is not None

    def cancel(self) -> None:
        """Ask the scheduler to drop this task at its next step; waiting callers get `GenerationCancelled`."""
        self._cancelled.set()

    def settle(self, audio: np.ndarray, sample_rate: int) -> None:
        """Record the audio without waking waiting callers (`release` does): a batch settles all its
        tasks first, so a caller woken by one of them sees the others finished too."""
        fine = self.fine.cpu().numpy().astype(np.int64) if self.fine is not None else None
        semantic = np.asarray(self.semantic, dtype=np.int64)
        self.result = GeneratedAudio(audio.astype(np.float32), sample_rate, semantic=semantic, fine=fine)

    def release(self) -> None:
        """Wake the callers waiting for this task."""
        self._done.set()

    def finish(self, audio: np.ndarray, sample_rate: int) -> None:
        self.settle(audio, sample_rate)
        self.release()

    def drop(self) -> None:
        """Fail a cancelled task: its waiting callers get `GenerationCancelled`."""
        self.fail(GenerationCancelled("the request was cancelled before its audio was ready"))

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout: float | None = None) -> GeneratedAudio:
        """Block until the audio is ready; cancel the task and raise if `timeout` seconds pass first."""
        if not self._done.wait(timeout):
            self.cancel()
            raise GenerationCancelled(f"generation did not finish within {timeout} s and was cancelled")
        if self.error is not None:
            raise self.error
        assert self.result is not None  # set together with _done when there is no error
        return self.result
