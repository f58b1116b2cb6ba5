"""Speaker similarity: x-vectors from a speaker-verification model, cosine similarity, drift over chunks.

The default is `microsoft/wavlm-base-plus-sv` (WavLM base plus with an x-vector head, ~95M
parameters, 512-value embeddings), loaded with transformers' `WavLMForXVector`; its model card
puts the same-speaker threshold at a cosine of 0.86. Any `*ForXVector` checkpoint with the same
interface works, as does a local folder or the tiny random one from `barkserve make-tiny --with-scorers`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.bark import SAMPLE_RATE
from barkserve.quality.loading import load

DEFAULT_SPEAKER = "microsoft/wavlm-base-plus-sv"
SPEAKER_RATE = 16_000
# Shortest clip embedded as it is (0.5 s at 16 kHz: the convolutions need more than a few frames).
MIN_SEC = 0.5


class XVectorEncoder:
    """Owns one `WavLMForXVector` and its feature extractor; `embed` runs a batch at a time.

    Args:
        source: Hub id or local folder.
        device: torch device name.
        offline: Only use local files (`local_files_only`).

    Raises:
        ScorerUnavailable: The checkpoint cannot be found or loaded.
    """

    def __init__(self, source: str = DEFAULT_SPEAKER, device: str = "cpu", offline: bool = False) -> None:
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.source = source
        self.device = device
        self.extractor: Any = load("speaker", source, AutoFeatureExtractor.from_pretrained, offline)
        model: Any = load("speaker", source, WavLMForXVector.from_pretrained, offline)
        self.model = model.to(device).eval()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Values per embedding."""
        return int(self.model.config.xvector_output_dim)

    def embed(self, clips: Sequence[np.ndarray], rate: int = SAMPLE_RATE) -> np.ndarray:
        """L2-normalized embeddings of mono float clips, float32 [N, D], in order."""
        import torch

        if not clips:
            return np.zeros((0, self.size), dtype=np.float32)
        # The model's convolutions need some input: a clip shorter than MIN_SEC (a chunk that ended
        # at once) is padded with silence rather than failing the whole batch.
        audio = [_at_least(resample(c, rate, SPEAKER_RATE), int(MIN_SEC * SPEAKER_RATE)) for c in clips]
        # Models whose first conv layer normalizes over time ("group", WavLM/wav2vec2 base, the default
        # checkpoint) see padding as signal: a clip's embedding would depend on its batch neighbours.
        # Those run one clip per pass; "layer" models pad the batch and mask it.
        groups = [[a] for a in audio] if self.model.config.feat_extract_norm == "group" else [audio]
        vectors = []
        with self._lock, torch.inference_mode():
            for group in groups:
                inputs = self.extractor(
                    group, sampling_rate=SPEAKER_RATE, padding=True, return_attention_mask=True, return_tensors="pt"
                )
                inputs = {k: v.to(self.device) for k, v in inputs.items()}  # input_values, attention_mask [n, samples]
                vectors.append(self.model(**inputs).embeddings.float().cpu())  # [n, D]
        return normalize_rows(torch.cat(vectors).numpy())


@dataclass(frozen=True)
class Drift:
    """How far the voice of a long text's chunks strays from its first chunk."""

    # Cosine of each later chunk to the first, in order; empty for a single chunk.
    similarities: tuple[float, ...]
    # The lowest and the mean of `similarities` (1.0 for a single chunk: nothing strayed).
    min_similarity: float
    mean_similarity: float
    # Index of the chunk least like the first (0 for a single chunk).
    worst_chunk: int


def _at_least(wav: np.ndarray, samples: int) -> np.ndarray:
    return wav if len(wav) >= samples else np.pad(wav.astype(np.float32), (0, samples - len(wav)))


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (normalized here, so raw vectors work too)."""
    x, y = normalize_rows(np.asarray(a).reshape(1, -1)), normalize_rows(np.asarray(b).reshape(1, -1))
    if x.shape != y.shape:
        raise ValueError(f"embeddings differ in size: {x.shape[1]} and {y.shape[1]}")
    return float(np.clip(x[0] @ y[0], -1.0, 1.0))


def drift(embeddings: np.ndarray | Sequence[np.ndarray]) -> Drift:
    """Similarity of each chunk's embedding to the first (accepted) chunk's, in order.

    Raises:
        ValueError: No embeddings.
    """
    if len(embeddings) == 0:
        raise ValueError("drift needs at least one embedding")
    rows = normalize_rows(np.stack([np.asarray(e).reshape(-1) for e in embeddings]))  # [N, D]
    sims = np.clip(rows[1:] @ rows[0], -1.0, 1.0)  # [N - 1]
    if len(sims) == 0:
        return Drift(similarities=(), min_similarity=1.0, mean_similarity=1.0, worst_chunk=0)
    return Drift(
        similarities=tuple(float(s) for s in sims),
        min_similarity=float(sims.min()),
        mean_similarity=float(sims.mean()),
        worst_chunk=int(sims.argmin()) + 1,
    )
