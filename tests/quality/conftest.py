"""Tiny random scorer checkpoints, built once per session and loaded through `from_pretrained`."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_scorers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(asr folder, speaker folder) of tiny random Whisper and WavLM x-vector checkpoints."""
    from barkserve.testing.tiny import make_tiny_scorers

    return make_tiny_scorers(tmp_path_factory.mktemp("tiny-scorers"))


@pytest.fixture(autouse=True)
def fresh_shared_scorers() -> None:
    """Each test starts without the process's shared scorers (one test's loaded models hide another's failure)."""
    from barkserve.quality.scorer import clear_shared_scorers

    clear_shared_scorers()
