"""Fixtures for fine-tuning tests: tiny HuBERT + quantizer, espeak-ng speech, a prepared set, a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from finetune_helpers import QUICK, write_ljspeech

# The tiny HuBERT has 3 layers; the quantizer reads the second.
TINY_LAYER = 2


@pytest.fixture(scope="session")
def tiny_quantizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LSTM quantizer for a tiny random HuBERT, saved in our format."""
    import torch

    from barkserve.cloning.quantizer import Quantizer, QuantizerInfo
    from barkserve.testing.tiny import make_tiny_hubert

    hubert = make_tiny_hubert(tmp_path_factory.mktemp("tiny-hubert"))
    torch.manual_seed(0)
    info = QuantizerInfo(method="lstm", hubert=str(hubert), layer=TINY_LAYER, input_size=32, hidden_size=16)
    return Quantizer.create(info).save(tmp_path_factory.mktemp("quantizer") / "q.pt")


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LJSpeech folder of six espeak-ng sentences (two voices)."""
    return write_ljspeech(tmp_path_factory.mktemp("ljspeech"))


@pytest.fixture(scope="session")
def encoders(tiny_model_dir: Path, tiny_quantizer: Path) -> Any:
    from barkserve.finetune.prepare import load_encoders

    return load_encoders(str(tiny_model_dir), tiny_quantizer, device="cpu", offline=True)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, speech_dir: Path, encoders: Any) -> Path:
    """The speech prepared for training: 4 train and 2 held-out items."""
    from barkserve.finetune.prepare import PrepareOptions, prepare_dataset

    return prepare_dataset(speech_dir, tmp_path_factory.mktemp("prepared"), encoders, PrepareOptions(heldout=0.34))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Any:
    """A LoRA run of all three stages: 12 steps, held-out checks every 4."""
    from barkserve.finetune import TrainOptions, train

    options = TrainOptions(max_steps=12, eval_every=4, save_every=4, **QUICK)
    return train(prepared, tmp_path_factory.mktemp("run") / "run", options, offline=True)


@pytest.fixture(scope="session")
def tiny_scorer_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(asr folder, speaker folder): the tiny random Whisper and x-vector models the eval tests use."""
    from barkserve.testing.tiny import make_tiny_scorers

    return make_tiny_scorers(tmp_path_factory.mktemp("tiny-scorers"))
