"""EnCodec codes of a recording with the Bark checkpoint's own `codec_model` (6 kbps, 8 codebooks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from barkserve.bark import CODEC_FRAME_RATE_HZ, N_COARSE, N_FINE, SEMANTIC_RATE_HZ

# Bark's fine prompt is 8 codebooks, which is EnCodec 24 kHz at 6 kbps; coarse is the first 2.
BANDWIDTH_KBPS = 6.0


def encode_codes(codec_model: Any, wav24: np.ndarray) -> np.ndarray:
    """Encode 24 kHz mono audio to EnCodec codes.

    Args:
        codec_model: A transformers `EncodecModel` (`BarkModel.codec_model`).
        wav24: (samples,) float audio at 24 kHz.

    Returns:
        (8, C) int64 codes in 0..1023, C = ceil(samples / 320).
    """
    import torch

    param = next(codec_model.parameters())
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(wav24, dtype=np.float32), device=param.device).to(param.dtype)
        out = codec_model.encode(x[None, None], bandwidth=BANDWIDTH_KBPS)  # x: [1, 1, samples]
        codes = out.audio_codes  # [chunks=1, 1, 8, C] for the 24 kHz model (no chunking)
        if codes.shape[0] != 1 or codes.shape[2] != N_FINE:
            raise ValueError(f"expected EnCodec codes of shape [1, 1, 8, C]; got {tuple(codes.shape)}")
        return codes[0, 0].long().cpu().numpy()


def decode_codes(codec_model: Any, codes: np.ndarray) -> np.ndarray:
    """Decode (8, C) codes back to (samples,) float32 audio at 24 kHz."""
    import torch

    param = next(codec_model.parameters())
    with torch.inference_mode():
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64), device=param.device)
        emb = codec_model.quantizer.decode(c[:, None])  # codes: [8, 1, C] -> emb: [1, D, C]
        audio = codec_model.decoder(emb)  # [1, 1, samples]
        return audio[0, 0].float().cpu().numpy()


def acoustic_prompts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split (8, C) codes into Bark's coarse (2, C) and fine (8, C) prompts."""
    fine = np.ascontiguousarray(codes, dtype=np.int64)
    return fine[:N_COARSE].copy(), fine


def semantic_length(n_frames: int) -> int:
    """How many semantic tokens cover `n_frames` codec frames (49.9 vs 75 per second)."""
    return max(1, round(n_frames * SEMANTIC_RATE_HZ / CODEC_FRAME_RATE_HZ))
