"""The engine boundary: what a request carries and what comes back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from barkserve.bark import MAX_TEXT_TOKENS
from barkserve.options import SynthesisOptions
from barkserve.voices import VoicePrompt

# MAX_TEXT_TOKENS stays importable from here (synthesizer.py imports it).
__all__ = ["MAX_TEXT_TOKENS", "Engine", "EngineLoad", "GeneratedAudio", "GenerationRequest", "QueuingEngine"]


def text_inputs(tokenizer: Any, text: str) -> np.ndarray:
    """Tokenize as `BarkProcessor` does (no special tokens); returns (T,) ids."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """One piece of text Bark can speak in a single generation."""

    text_ids: np.ndarray  # (T,) tokenizer ids, T <= 256, no special tokens
    voice: VoicePrompt | None
    options: SynthesisOptions  # seed already fixed
    # A stream's first chunk: a batching engine starts it ahead of queued work that is not, so the
    # listener hears something soon. It changes when the request runs, never what it produces.
    first_audio: bool = False
    # A LoRA adapter of the engine's model (engine/adapters.py) by name; None: the model itself.
    adapter: str | None = None


@dataclass(frozen=True, eq=False)
class GeneratedAudio:
    """Audio of one request, trimmed to its real length, and the tokens that made it when known."""

    audio: np.ndarray  # (samples,) float32 mono
    sample_rate: int
    semantic: np.ndarray | None = None  # (S,) semantic tokens, end-of-speech removed
    fine: np.ndarray | None = None  # (8, C) codec codes; coarse is fine[:2]

    @property
    def duration_sec(self) -> float:
        return len(self.audio) / self.sample_rate

    def as_history(self, fallback: VoicePrompt) -> VoicePrompt:
        """These tokens as the next chunk's voice prompt; `fallback` when there are none (no speech)."""
        if self.semantic is None or self.fine is None or len(self.semantic) == 0 or self.fine.shape[1] == 0:
            return fallback
        return VoicePrompt.from_history(self.semantic, self.fine, fallback.name)


@dataclass(frozen=True)
class EngineLoad:
    """What an engine holds now (metrics, and the server's queue bound)."""

    queued: int = 0  # requests waiting for a slot
    running: int = 0  # rows being generated (the semantic and coarse stages)


class Engine(Protocol):
    """Turns requests into audio; safe to call from many threads."""

    sample_rate: int

    def tokenize(self, text: str) -> np.ndarray: ...

    def generate(self, request: GenerationRequest) -> GeneratedAudio: ...

    def load(self) -> EngineLoad:
        """What the engine holds now; an engine without a queue of its own holds nothing waiting."""
        ...

    def close(self) -> None:
        """Finish what is in flight and release the engine's threads (nothing for an engine without)."""
        ...


class Pending(Protocol):
    """A request inside a queuing engine."""

    @property
    def finished(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> GeneratedAudio: ...

    def cancel(self) -> None: ...


@runtime_checkable
class QueuingEngine(Engine, Protocol):
    """An engine with a queue of its own: a submitted request can be cancelled while queued or running."""

    def submit(self, request: GenerationRequest) -> Pending: ...
