"""Intelligibility: transcribe Bark's audio with a Whisper checkpoint (transformers), batched.

The default is `openai/whisper-large-v3-turbo` (809M parameters, ~1.6 GB in float16; 4 decoder
layers, so about as fast as whisper-small with large-v3's accuracy), multilingual like Bark.
Any Whisper checkpoint works: `openai/whisper-small` (244M) on small machines, a local folder
offline, or the tiny random one `barkserve make-tiny --with-scorers` writes for tests.
Error rates against the text live in `quality.metrics`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.bark import SAMPLE_RATE
from barkserve.errors import InvalidRequest
from barkserve.quality.loading import load

DEFAULT_ASR = "openai/whisper-large-v3-turbo"
ASR_RATE = 16_000
# Whisper reads 30 s windows; longer clips go through its sequential long-form decoding.
WINDOW_SEC = 30.0
# Bark chunks are at most ~14 s: ~40 tokens of speech; 224 (half Whisper's decoder context) is ample.
MAX_NEW_TOKENS = 224


class WhisperTranscriber:
    """Owns one Whisper model and its processor; `transcribe` runs a batch at a time.

    Args:
        source: Hub id or local folder of a Whisper checkpoint.
        device: torch device name ("cpu", "cuda", "cuda:1").
        offline: Only use local files (`local_files_only`): the HF cache or a folder.
        dtype: torch dtype name; float16 is the usual choice on a GPU.

    Raises:
        ScorerUnavailable: The checkpoint cannot be found or loaded.
    """

    def __init__(self, source: str = DEFAULT_ASR, device: str = "cpu", offline: bool = False, dtype: str = "float32"):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.source = source
        self.device = device
        self.dtype = getattr(torch, dtype)
        self.processor: Any = load("ASR", source, WhisperProcessor.from_pretrained, offline)
        model: Any = load("ASR", source, WhisperForConditionalGeneration.from_pretrained, offline, dtype=self.dtype)
        self.model = model.to(device).eval()
        # generate() mutates its generation config per call (language, task); one call at a time.
        self._lock = threading.Lock()

    def transcribe(
        self,
        clips: Sequence[np.ndarray],
        language: str | Sequence[str],
        rate: int = SAMPLE_RATE,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> list[str]:
        """Transcribe mono float clips, one batch per language.

        Args:
            clips: Mono float32 arrays at `rate` Hz (Bark's 24 kHz by default).
            language: One language code for all clips ("en", "zh") or one per clip.
            rate: Sample rate of `clips`.
            max_new_tokens: Cap on the tokens of each 30 s window's transcript.

        Returns:
            One transcript per clip, in order.
        """
        languages = [language] * len(clips) if isinstance(language, str) else list(language)
        if len(languages) != len(clips):
            raise ValueError(f"got {len(clips)} clips but {len(languages)} languages")
        for lang in set(languages):
            self._check_language(lang)
        audio = [resample(c, rate, ASR_RATE) for c in clips]
        out = [""] * len(clips)
        for lang in dict.fromkeys(languages):
            rows = [i for i, code in enumerate(languages) if code == lang]
            texts = self._generate([audio[i] for i in rows], lang, max_new_tokens)
            for i, text in zip(rows, texts, strict=True):
                out[i] = text
        return out

    def _check_language(self, language: str) -> None:
        known = getattr(self.model.generation_config, "lang_to_id", None) or {}
        if f"<|{language}|>" not in known:
            codes = sorted(token.strip("<|>") for token in known)
            raise InvalidRequest(
                f"ASR model {self.source!r} does not know language {language!r}; use one of its codes: {codes}"
            )

    def _generate(self, audio: list[np.ndarray], language: str, max_new_tokens: int) -> list[str]:
        import torch

        long_form = max(len(a) for a in audio) > WINDOW_SEC * ASR_RATE
        # Short clips are padded to Whisper's 30 s window; longer ones keep their length, with a mask,
        # and transformers decodes them window by window (this needs timestamps).
        extra = {"truncation": False, "padding": "longest", "return_attention_mask": True} if long_form else {}
        inputs = self.processor.feature_extractor(audio, sampling_rate=ASR_RATE, return_tensors="pt", **extra)
        features = inputs.input_features.to(self.device, self.dtype)  # [B, mel bins, frames]
        kwargs: dict[str, Any] = {"language": language, "task": "transcribe", "max_new_tokens": max_new_tokens}
        if long_form:
            kwargs.update(attention_mask=inputs.attention_mask.to(self.device), return_timestamps=True)
        with self._lock, torch.inference_mode():
            ids = self.model.generate(features, **kwargs)  # [B, tokens]
        return [t.strip() for t in self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
