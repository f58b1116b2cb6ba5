"""The reference engine: transformers' Bark stages exactly as `BarkModel.generate` runs them."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from transformers.models.bark.generation_configuration_bark import (
    BarkCoarseGenerationConfig,
    BarkFineGenerationConfig,
    BarkSemanticGenerationConfig,
)

from barkserve.bark import MAX_TEXT_TOKENS
from barkserve.engine.adapters import Adapter
from barkserve.engine.base import EngineLoad, GeneratedAudio, GenerationRequest, text_inputs
from barkserve.engine.lora import AdapterSet
from barkserve.errors import ConfigError
from barkserve.models import LoadedModel
from barkserve.options import SynthesisOptions

# transformers divides the logits by the temperature as they are: below this the division overflows
# to inf and the softmax to NaN. Sampling's limit as the temperature goes to 0 is the argmax, which
# the batched engine's stable softmax also gives (engine/sampling.py probs_at).
GREEDY_BELOW = 1e-6


def stage_kwargs(options: SynthesisOptions) -> dict[str, Any]:
    """Options in `BarkModel.generate`'s per-stage keyword form; temperature 0 means greedy."""
    kwargs: dict[str, Any] = {"semantic_max_new_tokens": options.max_semantic_tokens}
    for stage, temp in (("semantic", options.text_temp), ("coarse", options.waveform_temp)):
        kwargs[f"{stage}_do_sample"] = temp > GREEDY_BELOW
        if temp > GREEDY_BELOW:
            kwargs[f"{stage}_temperature"] = temp
    # transformers' fine stage takes the argmax when its temperature is None or 1.0.
    kwargs["fine_temperature"] = options.waveform_temp if options.waveform_temp > GREEDY_BELOW else None
    if options.min_eos_p is not None:
        kwargs["min_eos_p"] = options.min_eos_p
    return kwargs


class ReferenceEngine:
    """Runs the reference stages under a lock, so requests are served one after another.

    A request with a LoRA `adapter` runs transformers' same stages on a copy of the model whose
    projections carry the adapters' banks (engine/lora.py; the base weights are shared, nothing is
    merged), as a batch of one row of that adapter; requests without one run the loaded model itself.
    """

    def __init__(self, loaded: LoadedModel, adapters: list[Adapter] | None = None) -> None:
        self.loaded = loaded
        self.sample_rate = loaded.sample_rate
        self._lock = threading.Lock()
        self.adapters = AdapterSet(adapters or [])
        self.lora_model = None
        if self.adapters:
            if getattr(loaded.model, "fine_acoustics_hook", None) is not None:
                raise ConfigError("--cpu-offload bypasses the adapters' layers; serve adapters without it")
            self.lora_model = self.adapters.wrap_model(loaded.model, loaded.device, loaded.dtype)

    def tokenize(self, text: str) -> np.ndarray:
        return text_inputs(self.loaded.tokenizer, text)

    def load(self) -> EngineLoad:
        return EngineLoad()  # requests wait on the lock, in their own threads: nothing queued here

    def close(self) -> None:
        """Nothing to stop: requests run in their callers' threads."""

    def generate(self, request: GenerationRequest) -> GeneratedAudio:
        import torch

        entry = self.adapters.entry(request.adapter)
        model = self.lora_model if entry else self.loaded.model
        input_ids, attention_mask, history = bark_inputs(request, self.loaded.device)
        seed = fixed_seed(request)
        with self._lock, torch.inference_mode(), self.adapters.use(entry, self.loaded.device):
            # Seeding under the lock makes a request's samples depend on its seed alone.
            torch.manual_seed(seed)
            semantic, fine, audio = run_stages(model, input_ids, attention_mask, history, request.options)
        return GeneratedAudio(
            audio=audio.astype(np.float32), sample_rate=self.sample_rate, semantic=semantic, fine=fine
        )


def bark_inputs(request: GenerationRequest, device: Any) -> tuple[Any, Any, dict[str, Any] | None]:
    """A request as `BarkProcessor` prepares it: text ids padded to 256 with their mask, and the voice."""
    import torch

    ids = torch.as_tensor(request.text_ids, dtype=torch.long)[None]  # [1, T]
    pad = MAX_TEXT_TOKENS - ids.shape[1]
    input_ids = torch.nn.functional.pad(ids, (0, pad)).to(device)  # [1, 256]
    attention_mask = torch.nn.functional.pad(torch.ones_like(ids), (0, pad)).to(device)  # [1, 256]
    history = None
    if request.voice is not None:
        history = {k: torch.as_tensor(v.astype(np.int64)).to(device) for k, v in request.voice.arrays().items()}
    return input_ids, attention_mask, history


def fixed_seed(request: GenerationRequest) -> int:
    """The request's seed; the caller must have fixed it (None is a bug, not a seed 0)."""
    if request.options.seed is None:
        raise ValueError("GenerationRequest.options.seed must be fixed before generation")
    return request.options.seed


def run_stages(model: Any, input_ids: Any, attention_mask: Any, history: Any, options: SynthesisOptions) -> tuple:
    """`BarkModel.generate`'s own stage calls, in its order, keeping the tokens it throws away.

    Returns (semantic (S,), fine (8, C), audio (samples,)) for a batch of one.
    """
    gc = model.generation_config
    semantic_config = BarkSemanticGenerationConfig(**gc.semantic_config)
    coarse_config = BarkCoarseGenerationConfig(**gc.coarse_acoustics_config)
    fine_config = BarkFineGenerationConfig(**gc.fine_acoustics_config)
    kwargs = stage_kwargs(options)
    per_stage: dict[str, dict[str, Any]] = {"semantic": {}, "coarse": {}, "fine": {}}
    for key, value in kwargs.items():
        stage, _, name = key.partition("_")
        if stage in per_stage:  # min_eos_p is not a stage setting; it is passed to semantic below
            per_stage[stage][name] = value
    semantic = model.semantic.generate(
        input_ids,
        history_prompt=history,
        semantic_generation_config=semantic_config,
        attention_mask=attention_mask,
        min_eos_p=options.min_eos_p,
        **per_stage["semantic"],
    )
    coarse, lengths = model.coarse_acoustics.generate(
        semantic,
        history_prompt=history,
        semantic_generation_config=semantic_config,
        coarse_generation_config=coarse_config,
        codebook_size=gc.codebook_size,
        return_output_lengths=True,
        **per_stage["coarse"],
    )
    fine = model.fine_acoustics.generate(
        coarse,
        history_prompt=history,
        semantic_generation_config=semantic_config,
        coarse_generation_config=coarse_config,
        fine_generation_config=fine_config,
        codebook_size=gc.codebook_size,
        **per_stage["fine"],
    )
    if getattr(model, "fine_acoustics_hook", None) is not None:
        # With --cpu-offload: as BarkModel.generate does, swap the fine stage out and the codec in.
        model.fine_acoustics_hook.offload()
        model.codec_model = model.codec_model.to(model.device)
    n_frames = int(lengths[0]) // coarse_config.n_coarse_codebooks
    # With end-of-speech first there are no frames: `BarkModel.generate` hands the codec zero frames
    # and EnCodec raises (its first convolution is wider than its input); the answer is no audio.
    audio = model.codec_decode(fine, [n_frames])[0] if n_frames else fine.new_zeros(0).float()
    if getattr(model, "codec_model_hook", None) is not None:
        model.codec_model_hook.offload()
    # The coarse stage overwrote end-of-speech and padding in place with its own pad id (>= 10,000).
    tokens = semantic[0].cpu().numpy()
    tokens = tokens[tokens < semantic_config.semantic_vocab_size]
    return tokens.astype(np.int64), fine[0, :, :n_frames].cpu().numpy().astype(np.int64), audio.float().cpu().numpy()
