"""Test doubles shared by several test modules."""

from __future__ import annotations

from typing import Any


class FakeEngine:
    """A deterministic stand-in for the engine: real tokenizer, instant audio of a known length.

    Each request gives `samples_per_token` samples per text token, all equal to a value made from
    its seed, so tests can tell chunks apart and check how they were joined.
    """

    samples_per_token = 240

    def __init__(self, loaded: Any) -> None:
        from barkserve.engine import ReferenceEngine

        self._tokenizer = ReferenceEngine(loaded)
        self.sample_rate = loaded.sample_rate
        self.requests: list[Any] = []

    def tokenize(self, text: str) -> Any:
        return self._tokenizer.tokenize(text)

    def generate(self, request: Any) -> Any:
        import numpy as np

        from barkserve.engine import GeneratedAudio

        self.requests.append(request)
        level = (request.options.seed % 1000) / 2000
        audio = np.full(len(request.text_ids) * self.samples_per_token, level, dtype=np.float32)
        return GeneratedAudio(audio=audio, sample_rate=self.sample_rate)
