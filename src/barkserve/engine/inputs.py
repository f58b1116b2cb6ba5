"""Per-row inputs of each stage, computed exactly as transformers' Bark stages compute them.

Every quirk of `BarkSemanticModel.generate`, `BarkCoarseModel.generate` and `BarkFineModel.generate`
for a batch of one is kept (rounding, the two dropped coarse history tokens, the fine windows), so
that greedy decoding gives the reference's tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from barkserve.voices import VoicePrompt


@dataclass(frozen=True)
class BarkGeometry:
    """Token ids and window sizes from a checkpoint's generation config."""

    text_offset: int  # text ids are shifted by this into the semantic input vocabulary
    text_pad: int
    semantic_infer: int
    semantic_vocab: int  # 10,000 real semantic tokens; the end-of-speech id equals this
    eos: int
    max_text: int  # 256
    semantic_rate_hz: float
    coarse_pad: int
    coarse_infer: int
    max_coarse_input: int  # 256 semantic tokens per window
    max_coarse_history: int  # 630 coarse tokens per window
    window: int  # 60 new coarse tokens per window
    n_coarse: int
    coarse_rate_hz: int
    codebook: int
    max_fine_history: int
    max_fine_input: int
    n_fine: int

    @classmethod
    def from_model(cls, model: Any) -> BarkGeometry:
        from transformers.models.bark.generation_configuration_bark import (
            BarkCoarseGenerationConfig,
            BarkFineGenerationConfig,
            BarkSemanticGenerationConfig,
        )

        gen = model.generation_config
        sem = BarkSemanticGenerationConfig(**gen.semantic_config)
        coarse = BarkCoarseGenerationConfig(**gen.coarse_acoustics_config)
        fine = BarkFineGenerationConfig(**gen.fine_acoustics_config)
        return cls(
            sem.text_encoding_offset, sem.text_pad_token, sem.semantic_infer_token, sem.semantic_vocab_size,
            sem.eos_token_id, sem.max_input_semantic_length, sem.semantic_rate_hz,
            coarse.coarse_semantic_pad_token, coarse.coarse_infer_token, coarse.max_coarse_input_length,
            coarse.max_coarse_history, coarse.sliding_window_len, coarse.n_coarse_codebooks,
            coarse.coarse_rate_hz, int(gen.codebook_size), fine.max_fine_history_length,
            fine.max_fine_input_length, fine.n_fine_codebooks,
        )  # fmt: skip

    @property
    def ratio(self) -> float:
        """Coarse tokens per semantic token (interleaved codebooks): 75 / 49.9 * 2."""
        return self.coarse_rate_hz / self.semantic_rate_hz * self.n_coarse

    @property
    def max_semantic_history(self) -> int:
        return int(np.floor(self.max_coarse_history / self.ratio))


def semantic_inputs(geo: BarkGeometry, text_ids: np.ndarray, voice: VoicePrompt | None) -> np.ndarray:
    """Text and voice history of the semantic prefill: [2, 256] int64 (row 0 text, row 1 history)."""
    n = geo.max_text
    text = np.full(n, geo.text_pad, dtype=np.int64)
    ids = np.asarray(text_ids, dtype=np.int64)[:n]
    text[: len(ids)] = ids + geo.text_offset
    history = np.full(n, geo.eos, dtype=np.int64)  # the semantic pad token is the end-of-speech id
    if voice is not None:
        prompt = np.asarray(voice.semantic, dtype=np.int64)[-n:]
        history[: len(prompt)] = prompt
    return np.stack([text, history])


def coarse_histories(geo: BarkGeometry, voice: VoicePrompt | None) -> tuple[np.ndarray, np.ndarray]:
    """The voice's semantic (S,) and flattened coarse (C,) histories, trimmed like the reference."""
    if voice is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sem = np.asarray(voice.semantic, dtype=np.int64)
    coarse = np.asarray(voice.coarse, dtype=np.int64).copy()
    for n in range(1, coarse.shape[0]):
        coarse[n, :] += geo.codebook * n
    flat = coarse.T.reshape(-1) + geo.semantic_vocab  # interleaved: c0, c1, c0, c1, ...
    n_sem = min(geo.max_semantic_history, len(sem) - len(sem) % 2, int(np.floor(len(flat) / geo.ratio)))
    n_coarse = round(n_sem * geo.ratio)
    # The reference drops the last two coarse tokens "for time alignment".
    return sem[-n_sem:], flat[-n_coarse:][:-2]


def coarse_length(geo: BarkGeometry, n_semantic: int) -> int:
    """Coarse tokens to generate for n semantic tokens, with the reference's float32 rounding."""
    n = torch.tensor([n_semantic], dtype=torch.long)
    frames = torch.floor(n * geo.ratio / geo.n_coarse)
    return int(torch.round(frames * geo.n_coarse).int()[0])


def coarse_window(geo: BarkGeometry, semantic: np.ndarray, base: int, coarse: np.ndarray, done: int) -> np.ndarray:
    """One sliding window's prompt: 256 semantic tokens, the infer token, up to 630 coarse tokens.

    semantic: voice history + generated semantic tokens; base: length of the voice history;
    coarse: voice history + coarse tokens so far; done: coarse tokens generated so far.
    """
    idx = base + round(done / geo.ratio)
    window = semantic[max(0, idx - geo.max_semantic_history) :][: geo.max_coarse_input]
    padded = np.full(geo.max_coarse_input, geo.coarse_pad, dtype=np.int64)
    padded[: len(window)] = window
    history = coarse[-geo.max_coarse_history :] if len(coarse) else coarse
    return np.concatenate([padded, [geo.coarse_infer], history]).astype(np.int64)


@dataclass
class FineRow:
    """One request's fine-stage buffer and the windows the reference runs over it."""

    codes: torch.Tensor  # [N, 8] long: history, coarse codes, padding (filled in place)
    n_history: int
    n_frames: int
    windows: list[tuple[int, int]]  # (start of the 1024-frame window, first frame to fill in it)

    def output(self) -> torch.Tensor:
        """The generated frames: [8, n_frames]."""
        return self.codes[self.n_history : self.n_history + self.n_frames].T


def fine_row(geo: BarkGeometry, coarse: torch.Tensor, voice: VoicePrompt | None) -> FineRow:
    """Build the fine buffer for coarse tokens [L] (interleaved, vocab-offset) as the reference does."""
    frames = torch.remainder(coarse.view(-1, geo.n_coarse) - geo.semantic_vocab, geo.codebook)  # [F, 2]
    codes = pad_codebooks(frames, geo.n_fine - geo.n_coarse, geo.codebook)  # [F, 8]
    n_history = 0
    if voice is not None:
        history = torch.as_tensor(np.asarray(voice.fine, dtype=np.int64).T[-geo.max_fine_history :])
        codes = torch.cat([history.to(codes.device), codes])
        n_history = history.shape[0]
    if codes.shape[0] < geo.max_fine_input:
        pad = torch.full((geo.max_fine_input - codes.shape[0], geo.n_fine), geo.codebook, dtype=codes.dtype)
        codes = torch.cat([codes, pad.to(codes.device)])
    n_frames = frames.shape[0]
    n_loops = max(0, math.ceil((n_frames - (geo.max_fine_input - n_history)) / geo.max_fine_history)) + 1
    windows = []
    for n in range(n_loops):
        start = min(n * geo.max_fine_history, codes.shape[0] - geo.max_fine_input)
        fill = min(n_history + n * geo.max_fine_history, codes.shape[0] - geo.max_fine_history)
        windows.append((start, fill - start))
    return FineRow(codes.contiguous(), n_history, n_frames, windows)


def pad_codebooks(frames: torch.Tensor, extra: int, value: int) -> torch.Tensor:
    """Append `extra` codebook columns of `value`. frames: [F, 2] -> [F, 2 + extra]."""
    return torch.nn.functional.pad(frames, (0, extra), "constant", value)
