"""Fixtures for cloning tests: a tiny random HuBERT and quantizer, test recordings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloning_helpers import TINY_LAYER, write_audio


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random HubertModel saved with save_pretrained (3 layers, 32 wide)."""
    from barkserve.testing.tiny import make_tiny_hubert

    return make_tiny_hubert(tmp_path_factory.mktemp("tiny-hubert"))


@pytest.fixture(scope="session")
def tiny_quantizer(tmp_path_factory: pytest.TempPathFactory, tiny_hubert_dir: Path) -> Path:
    """An untrained LSTM quantizer for the tiny HuBERT, saved in our format."""
    import torch

    from barkserve.cloning.quantizer import Quantizer, QuantizerInfo

    torch.manual_seed(0)
    info = QuantizerInfo(method="lstm", hubert=str(tiny_hubert_dir), layer=TINY_LAYER, input_size=32, hidden_size=16)
    return Quantizer.create(info).save(tmp_path_factory.mktemp("quantizer") / "q.pt")


@pytest.fixture
def reference_wav(tmp_path: Path) -> Path:
    return write_audio(tmp_path / "ref.wav", 3.0)
