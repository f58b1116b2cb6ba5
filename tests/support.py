"""What several test modules share: skipping only outside CI, and a fake engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def in_ci() -> bool:
    """Under CI nothing may skip for a missing fixture or service: that would hide a broken install."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip on a developer's machine; fail under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing fixture or service is an error, not a skip)")
    pytest.skip(reason)


class FakeEngine:
    """A deterministic stand-in for the engine: real tokenizer, instant audio of a known length.

    Each request gives `samples_per_token` samples per text token, all equal to a value made from
    its seed, so tests can tell chunks apart and check how they were joined.
    """

    samples_per_token = 240

    def __init__(self, loaded: Any) -> None:
        self._tokenizer = loaded.tokenizer
        self.sample_rate = loaded.sample_rate
        self.requests: list[Any] = []
        self.calls: list[tuple[Any, Any]] = []  # (request, what it produced), in order

    def tokenize(self, text: str) -> Any:
        from barkserve.engine.base import text_inputs

        return text_inputs(self._tokenizer, text)

    def load(self) -> Any:
        from barkserve.engine import EngineLoad

        return EngineLoad()

    def close(self) -> None:
        """Nothing to stop."""

    def generate(self, request: Any) -> Any:
        import numpy as np

        from barkserve.engine import GeneratedAudio

        self.requests.append(request)
        level = (request.options.seed % 1000) / 2000
        audio = np.full(len(request.text_ids) * self.samples_per_token, level, dtype=np.float32)
        out = GeneratedAudio(audio=audio, sample_rate=self.sample_rate)
        self.calls.append((request, out))
        return out


def server_config(model_dir: Path, root: Path, **settings: Any) -> Any:
    """A ServerConfig on the tiny checkpoint with every folder under `root`, offline, no scorer models."""
    from barkserve.config import ServerConfig

    folders = {"output_dir": root / "output", "voices_dir": root / "voices", "jobs_dir": root / "jobs"}
    defaults = {"model": str(model_dir), "offline": True, "asr_model": "", "speaker_model": ""}
    return ServerConfig(**{**defaults, **folders, **settings})


def app_routes(app: Any) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) of every route of a Flask app, each path argument filled with 'x'."""
    import re

    return [
        (rule.endpoint, method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "x", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]
