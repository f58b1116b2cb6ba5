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
from barkserve.engine.stages.coarse import coarse_cache_length
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
    mode = onednn_mode(config.kernels, device, dtype, config.quantize, config.compile or config.fused)
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


# `auto_batch`: the share of the device's free memory the caches may take, and a row's bytes as a
# multiple of its KV caches (the rest is for prefills, the fine stage and the codec).
AUTO_BATCH_SHARE = 0.9
ROW_HEADROOM = 2.0


def row_bytes(model: Any, geo: BarkGeometry, dtype: Any) -> int:
    """Device memory one row takes in the causal stages: its semantic and coarse KV caches (keys and
    values, every layer, each stage's cache length, as `SemanticStage` and `CoarseStage` allocate them)
    times `ROW_HEADROOM`."""
    import torch

    size = torch.empty(0, dtype=dtype).element_size()
    total = 0
    for sub, length in (
        (model.semantic, model.semantic.config.block_size),
        (model.coarse_acoustics, coarse_cache_length(model.coarse_acoustics.config, geo)),
    ):
        cfg = sub.config
        total += 2 * cfg.num_layers * cfg.hidden_size * length * size  # heads x head size = hidden size
    return int(total * ROW_HEADROOM)


def rows_that_fit(free_bytes: int, per_row: int, ceiling: int, share: float = AUTO_BATCH_SHARE) -> int:
    """Rows per stage for `auto_batch`: as many rows of `per_row` bytes as fit in `share` of
    `free_bytes`, at most `ceiling`. Raises ConfigError when not even one row fits."""
    fit = int(free_bytes * share) // per_row
    if fit < 1:
        raise ConfigError(
            f"auto_batch: one row of the engine needs {per_row / 2**20:.0f} MiB of device memory but only "
            f"{free_bytes / 2**20:.0f} MiB are free ({share:.0%} usable); free memory on the device, use a "
            "smaller model or dtype, or run on another device"
        )
    return min(fit, ceiling)


def batch_rows(config: EngineConfig, model: Any, geo: BarkGeometry, device: Any, dtype: Any) -> int:
    """Rows per stage: `max_batch_size`, or with `auto_batch` on a CUDA device what its free memory
    holds (`rows_that_fit` of `torch.cuda.mem_get_info`), at most `max_batch_size`."""
    if not config.auto_batch or not str(device).startswith("cuda"):
        return config.max_batch_size
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return rows_that_fit(free, row_bytes(model, geo, dtype), config.max_batch_size)


def decode_mode(config: EngineConfig, device: Any) -> str:
    """The decode step's mode (engine/decode.py): `fused` or `compile` when asked, CUDA graphs on a CUDA device
    unless `cuda_graphs` is off, else eager. (`decode=` of `BatchedEngine` overrides it: the tests
    run the graphs' bucketed shapes on a CPU.) `fused` goes before both."""
    if config.fused:
        return "fused"
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
        self.max_batch = batch_rows(self.config, loaded.model, self.geometry, loaded.device, dtype)
        self.pipeline = Pipeline(
            models, self.geometry, self.max_batch, loaded.device, dtype, self.sample_rate,
            decode=self.decode_mode, adapters=self.adapters, overlap_fine=self.config.overlap_fine,
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
