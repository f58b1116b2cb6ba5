"""The public facade: text + voice + options in, audio out, through the engine."""

from __future__ import annotations

import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from barkserve.config import ServerConfig
from barkserve.engine import Engine, GenerationRequest, ReferenceEngine
from barkserve.engine.base import MAX_TEXT_TOKENS
from barkserve.errors import InvalidRequest, TextTooLong
from barkserve.models import LoadedModel, ModelRegistry
from barkserve.options import SynthesisOptions


@dataclass(frozen=True, eq=False)
class SynthesisResult:
    """Audio for one text, and how it was made."""

    audio: np.ndarray  # (samples,) float32 mono
    sample_rate: int
    text: str
    voice: str
    model: str
    seed: int
    processing_time_sec: float

    @property
    def duration_sec(self) -> float:
        return len(self.audio) / self.sample_rate


class Synthesizer:
    """Owns the model registry and one engine per loaded model.

    Example:
        synth = Synthesizer(ServerConfig(model="./tiny-bark"))
        result = synth.synthesize("Hello [laughs]", voice=3, options={"seed": 7})
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        registry: ModelRegistry | None = None,
        engine_factory: Callable[[LoadedModel], Engine] = ReferenceEngine,
    ) -> None:
        self.config = config or ServerConfig()
        self.registry = registry or ModelRegistry(self.config)
        self._engine_factory = engine_factory
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, model: str) -> Engine:
        """The engine of an allowed model, loading the model on first use."""
        loaded = self.registry.get(model)
        with self._lock:
            if model not in self._engines:
                self._engines[model] = self._engine_factory(loaded)
            return self._engines[model]

    def synthesize(
        self,
        text: object,
        voice: object = None,
        model: object = None,
        options: SynthesisOptions | Mapping[str, Any] | None = None,
    ) -> SynthesisResult:
        """Speak `text` with `voice` on `model`.

        Args:
            text: What to say (non-empty, at most `max_text_chars`, at most 256 text tokens).
            voice: Integer 0-9, preset name, or custom voice name; None means the default voice.
            model: An allowlisted model name or alias; None means the default model.
            options: `SynthesisOptions` or a dict of its fields.

        Returns:
            A `SynthesisResult` with float32 audio trimmed to its real length.

        Raises:
            InvalidRequest: for bad text, voice, model or options.
            ModelUnavailable: when the model cannot be loaded.
        """
        started = time.perf_counter()
        text = self.check_text(text)
        opts = options if isinstance(options, SynthesisOptions) else SynthesisOptions.from_dict(options or {})
        model_name = self.registry.resolve(model)
        voices = self.registry.voices(model_name)
        voice_name = voices.resolve_name(voice)
        prompt = voices.load(voice_name)
        engine = self.engine(model_name)
        ids = engine.tokenize(normalize(text))
        if len(ids) > MAX_TEXT_TOKENS:
            raise TextTooLong(
                f"text is {len(ids)} tokens; Bark speaks at most {MAX_TEXT_TOKENS} tokens (about 14 s) in one "
                f"generation. Send a shorter text (split it at sentence ends)."
            )
        seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        out = engine.generate(GenerationRequest(text_ids=ids, voice=prompt, options=opts.with_seed(seed)))
        return SynthesisResult(
            audio=out.audio,
            sample_rate=out.sample_rate,
            text=text,
            voice=voice_name,
            model=model_name,
            seed=seed,
            processing_time_sec=time.perf_counter() - started,
        )

    def check_text(self, text: object) -> str:
        if not isinstance(text, str):
            raise InvalidRequest(f"text must be a string; got {type(text).__name__}")
        if not text.strip():
            raise InvalidRequest("text must not be empty")
        if len(text) > self.config.max_text_chars:
            raise TextTooLong(
                f"text is {len(text)} characters; this server accepts at most {self.config.max_text_chars} "
                f"(setting max_text_chars)"
            )
        return text


def normalize(text: str) -> str:
    """NFC form, control characters dropped, runs of white space folded to one space."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return " ".join(text.split())
