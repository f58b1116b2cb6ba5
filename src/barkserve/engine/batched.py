"""The batched engine: owns the loaded model, runs Bark's stages with its own loops, shares batches.

Example:
    engine = BatchedEngine(loaded, EngineConfig(max_batch_size=8))
    audio = engine.generate(GenerationRequest(engine.tokenize("Hello"), voice, options.with_seed(1)))
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np

from barkserve.config import EngineConfig
from barkserve.engine.adapters import Adapter
from barkserve.engine.base import MAX_TEXT_TOKENS, EngineLoad, GeneratedAudio, GenerationRequest, text_inputs
from barkserve.engine.inputs import BarkGeometry
from barkserve.engine.kernels import onednn_mode, onednn_stage
from barkserve.engine.lora import AdapterSet
from barkserve.engine.pipeline import Pipeline, StageModels
from barkserve.engine.scheduler import Scheduler
from barkserve.engine.task import GenerationTask
from barkserve.errors import ConfigError, InvalidRequest
from barkserve.models import LoadedModel


def stage_models(model: Any, config: EngineConfig, device: Any, dtype: Any, geo: BarkGeometry) -> StageModels:
    """The sub-models the engine runs: the checkpoint's own, copies whose Linear layers run through
    oneDNN (fp32 on a CPU, `kernels`), or int8 copies (CPU only, `quantize`)."""
    parts = StageModels(model.semantic, model.coarse_acoustics, model.fine_acoustics, model.codec_model)
    if config.quantize == "int8":
        import torch

        if str(device) != "cpu":
            raise ConfigError("--quantize int8 is dynamic CPU quantization; use it with --device cpu")
        quantized = {
            # A copy, so that other engines sharing the loaded model keep the exact weights.
            name: torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(getattr(model, name)), {torch.nn.Linear}, dtype=torch.qint8
            )
            for name in ("semantic", "coarse_acoustics", "fine_acoustics")
        }
        parts = replace(parts, **quantized)
    mode = onednn_mode(config.kernels, device, dtype, config.quantize, config.compile)
    if mode is not None:
        packed = mode == "packed"
        parts = replace(
            parts,
            semantic=onednn_stage(model.semantic, packed),
            # The coarse stage never reads the head's first 10,000 (semantic) rows: they are not computed.
            coarse_acoustics=onednn_stage(model.coarse_acoustics, packed, head_first_row=geo.semantic_vocab),
            fine_acoustics=onednn_stage(model.fine_acoustics, packed),
        )
    return parts


def decode_mode(config: EngineConfig, device: Any) -> str:
    """The decode step's mode (engine/decode.py): `compile` when asked, CUDA graphs on a CUDA device
    unless `cuda_graphs` is off, else eager. (`decode=` of `BatchedEngine` overrides it: the tests
    run the graphs' bucketed shapes on a CPU.)"""
    if config.compile:
        return "compile"
    return "graphs" if config.cuda_graphs and str(device).startswith("cuda") else "eager"


class BatchedEngine:
    """Continuous-batching Bark engine; `generate` is safe to call from many threads at once.

    Under greedy decoding its semantic, coarse and fine tokens equal `BarkModel.generate`'s for each
    request run alone (unless `quantize="int8"`, which changes outputs); with sampling, a request's
    output depends on its seed alone, not on the requests it shares a batch with.

    `adapters` are LoRA adapters of the model (engine/adapters.py), loaded once here; a request names
    one with `GenerationRequest.adapter`, and rows of different adapters and of none share batches.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        config: EngineConfig | None = None,
        decode: str | None = None,
        adapters: list[Adapter] | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = config or EngineConfig()
        self.decode_mode = decode or decode_mode(self.config, loaded.device)
        self.sample_rate = loaded.sample_rate
        self.geometry = BarkGeometry.from_model(loaded.model)
        dtype = next(loaded.model.semantic.parameters()).dtype
        models = stage_models(loaded.model, self.config, loaded.device, dtype, self.geometry)
        self.adapters = AdapterSet(adapters or [])
        models = self.adapters.wrap(models, loaded.device, dtype)
        self.pipeline = Pipeline(
            models, self.geometry, self.config.max_batch_size, loaded.device, dtype, self.sample_rate,
            decode=self.decode_mode, adapters=self.adapters,
        )  # fmt: skip
        self.scheduler = Scheduler(self.pipeline, self.config.max_wait_ms)

    def tokenize(self, text: str) -> np.ndarray:
        return text_inputs(self.loaded.tokenizer, text)

    def submit(self, request: GenerationRequest) -> GenerationTask:
        """Queue a request and return its task at once (`task.wait()` for the audio, `task.cancel()`)."""
        self._check(request)
        entry = self.adapters.entry(request.adapter)
        return self.scheduler.submit(GenerationTask.create(request, self.loaded.device, entry))

    def generate(self, request: GenerationRequest) -> GeneratedAudio:
        """Queue a request and block until its audio is ready (or `request_timeout_s` passes)."""
        return self.submit(request).wait(self.config.request_timeout_s)

    def load(self) -> EngineLoad:
        """Requests waiting for a slot and rows in the semantic and coarse stages (read without the
        scheduler's lock: a step stale at worst)."""
        return EngineLoad(self.scheduler.queued, self.pipeline.running)

    def close(self) -> None:
        """Finish the requests in flight and stop the engine thread."""
        self.scheduler.close()

    def __enter__(self) -> BatchedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, request: GenerationRequest) -> None:
        ids = np.asarray(request.text_ids)
        limit = self.geometry.text_pad - self.geometry.text_offset
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) > MAX_TEXT_TOKENS:
            raise InvalidRequest(f"text_ids must be a 1-D integer array of at most {MAX_TEXT_TOKENS} tokens")
        if len(ids) and (ids.min() < 0 or ids.max() >= limit):
            raise InvalidRequest(f"text_ids must be tokenizer ids in 0..{limit - 1}")
