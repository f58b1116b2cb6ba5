"""The reference engine: transformers' `BarkModel.generate`, one request at a time."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from barkserve.engine.base import GeneratedAudio, GenerationRequest
from barkserve.models import LoadedModel
from barkserve.options import SynthesisOptions


def text_inputs(tokenizer: Any, text: str) -> np.ndarray:
    """Tokenize as `BarkProcessor` does (no special tokens); returns (T,) ids."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def stage_kwargs(options: SynthesisOptions) -> dict[str, Any]:
    """Options in `BarkModel.generate`'s per-stage keyword form; temperature 0 means greedy."""
    kwargs: dict[str, Any] = {"semantic_max_new_tokens": options.max_semantic_tokens}
    for stage, temp in (("semantic", options.text_temp), ("coarse", options.waveform_temp)):
        kwargs[f"{stage}_do_sample"] = temp > 0
        if temp > 0:
            kwargs[f"{stage}_temperature"] = temp
    # transformers' fine stage takes the argmax when its temperature is None or 1.0.
    kwargs["fine_temperature"] = options.waveform_temp if options.waveform_temp > 0 else None
    if options.min_eos_p is not None:
        kwargs["min_eos_p"] = options.min_eos_p
    return kwargs


class ReferenceEngine:
    """Runs `BarkModel.generate` under a lock, so requests are served one after another."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.sample_rate = loaded.sample_rate
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> np.ndarray:
        return text_inputs(self.loaded.tokenizer, text)

    def generate(self, request: GenerationRequest) -> GeneratedAudio:
        import torch

        model, device = self.loaded.model, self.loaded.device
        ids = torch.as_tensor(request.text_ids, dtype=torch.long)[None]  # [1, T]
        pad = 256 - ids.shape[1]
        input_ids = torch.nn.functional.pad(ids, (0, pad)).to(device)
        attention_mask = torch.nn.functional.pad(torch.ones_like(ids), (0, pad)).to(device)
        history = None
        if request.voice is not None:
            history = {k: torch.as_tensor(v).to(device) for k, v in request.voice.arrays().items()}
        seed = request.options.seed
        if seed is None:
            raise ValueError("GenerationRequest.options.seed must be fixed before generation")
        with self._lock, torch.inference_mode():
            # Seeding under the lock makes a request's samples depend on its seed alone.
            torch.manual_seed(seed)
            audio, lengths = model.generate(
                input_ids,
                attention_mask=attention_mask,
                history_prompt=history,
                return_output_lengths=True,
                **stage_kwargs(request.options),
            )
            samples = audio[0, : int(lengths[0])].float().cpu().numpy()
        return GeneratedAudio(audio=samples.astype(np.float32), sample_rate=self.sample_rate)
