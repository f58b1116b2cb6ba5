"""A tiny random UTMOS checkpoint, saved like the real `utmos_state_dict.pt` (its scores mean nothing)."""

from __future__ import annotations

from pathlib import Path


def make_tiny_utmos(path: str | Path, seed: int = 0) -> Path:
    """Save a random-weight UTMOS state dict (narrow wav2vec 2.0, 2 layers) to `path`; `mos_model` takes
    it as `utmos:PATH` and loads it through the same code as the real weights."""
    import torch

    from barkserve.quality.utmos import UtmosShape, build

    torch.manual_seed(seed)
    shape = UtmosShape(width=48, layers=2, ffn=96, conv=32, domain_dim=16, listeners=300, listener_dim=16, hidden=64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build(shape).state_dict(), path)
    return path
