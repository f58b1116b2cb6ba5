"""Codec stage: EnCodec decode of the fine codes to waveforms, batched across requests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def decode_audio(codec: Any, codes: list[torch.Tensor], max_batch: int) -> list[np.ndarray]:
    """EnCodec decode of [8, F_i] code arrays, right-padded into batches; returns float32 waveforms.

    Bark's codec decoder is causal (causal convolutions, forward LSTM), so padding after a row's last
    frame does not change its samples; each waveform is cut to its own F_i frames.
    """
    out: list[np.ndarray] = []
    for j in range(0, len(codes), max_batch):
        chunk = codes[j : j + max_batch]
        frames = max(c.shape[1] for c in chunk)
        batch = torch.zeros(len(chunk), chunk[0].shape[0], frames, dtype=torch.long, device=chunk[0].device)
        for i, c in enumerate(chunk):
            batch[i, :, : c.shape[1]] = c
        emb = codec.quantizer.decode(batch.transpose(0, 1))  # [m, D, F]
        audio = codec.decoder(emb)[:, 0]  # [m, samples]
        hop = audio.shape[-1] // frames
        out.extend(audio[i, : c.shape[1] * hop].float().cpu().numpy() for i, c in enumerate(chunk))
    return out
