"""Token-level comparison with transformers' `BarkModel.generate` itself, one request at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from barkserve.engine.base import GenerationRequest
from barkserve.engine.reference import ReferenceEngine, bark_inputs, fixed_seed, stage_kwargs
from barkserve.engine.task import GenerationTask


@dataclass(frozen=True, eq=False)
class StageTokens:
    """One request's tokens after each stage, and its audio."""

    semantic: np.ndarray  # (S,) without end-of-speech or padding
    coarse: np.ndarray  # (L,) interleaved, vocabulary-offset
    fine: np.ndarray  # (8, frames)
    audio: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage (reference only)

    def same_tokens(self, other: StageTokens) -> bool:
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in ("semantic", "coarse", "fine"))


@contextmanager
def _recording(model: Any) -> Iterator[dict[str, Any]]:
    """Record what the reference's stage `generate` methods return while the block runs."""
    seen: dict[str, Any] = {}
    subs = {"semantic": model.semantic, "coarse": model.coarse_acoustics, "fine": model.fine_acoustics}

    def recorder(key: str, original: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            out = original(*args, **kwargs)
            seen[f"{key}_seconds"] = time.perf_counter() - started
            # The coarse stage rewrites the semantic tokens in place: keep a copy of what came out.
            seen[key] = out[0].clone() if isinstance(out, tuple) else out.clone()
            return out

        return record

    for key, sub in subs.items():
        sub.generate = recorder(key, sub.generate)
    try:
        yield seen
    finally:
        for sub in subs.values():
            del sub.generate  # back to the class's method


def bark_generate(reference: ReferenceEngine, request: GenerationRequest) -> np.ndarray:
    """`BarkModel.generate` on one request, prepared as `BarkProcessor` does; returns trimmed audio."""
    import torch

    model = reference.loaded.model
    input_ids, attention_mask, history = bark_inputs(request, reference.loaded.device)
    with torch.inference_mode():
        torch.manual_seed(fixed_seed(request))
        audio, lengths = model.generate(
            input_ids,
            attention_mask=attention_mask,
            history_prompt=history,
            return_output_lengths=True,
            **stage_kwargs(request.options),
        )
    return audio[0, : int(lengths[0])].float().cpu().numpy()


def reference_tokens(reference: ReferenceEngine, request: GenerationRequest) -> StageTokens:
    """Run one request through `BarkModel.generate` alone and collect each stage's tokens."""
    eos = int(reference.loaded.model.generation_config.semantic_config["eos_token_id"])
    with _recording(reference.loaded.model) as seen:
        started = time.perf_counter()
        audio = bark_generate(reference, request)
        total = time.perf_counter() - started
    semantic = seen["semantic"][0].cpu().numpy()
    stop = np.flatnonzero(semantic == eos)
    semantic = semantic[: stop[0]] if len(stop) else semantic
    coarse = seen["coarse"][0].cpu().numpy()
    seconds = {k: seen[f"{k}_seconds"] for k in ("semantic", "coarse", "fine")}
    seconds["codec"] = total - sum(seconds.values())  # codec decode and the glue around the stages
    fine = seen["fine"][0].cpu().numpy()
    return StageTokens(semantic.astype(np.int64), coarse.astype(np.int64), fine, audio, seconds)


def task_tokens(task: GenerationTask) -> StageTokens:
    """The tokens a finished task of the batched engine produced."""
    fine = task.fine.cpu().numpy() if task.fine is not None else np.zeros((8, 0), dtype=np.int64)
    coarse = task.coarse if task.coarse is not None else np.zeros(0, dtype=np.int64)
    audio = task.result.audio if task.result is not None else np.zeros(0, dtype=np.float32)
    return StageTokens(np.asarray(task.semantic, dtype=np.int64), coarse, fine.astype(np.int64), audio)
