"""Per-request synthesis options: one frozen dataclass, validated once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from barkserve.bark import MAX_SEMANTIC_TOKENS, SEMANTIC_RATE_HZ
from barkserve.errors import InvalidRequest
from barkserve.markup.lexicon import Lexicon
from barkserve.qc import QualityCheck

# Bark stops after 768 new semantic tokens: about 15.4 s of speech.
MAX_DURATION_SEC = MAX_SEMANTIC_TOKENS / SEMANTIC_RATE_HZ
MAX_SEED = 2**63 - 1
# Options `to_dict` leaves out at their defaults (jobs stored before they existed keep their hash).
OPTIONAL = ("qc", "ssml", "normalize", "lexicon")
# The options' short names on the command line (`say` flags, `eval --config` keys) -> their fields.
SHORT_NAMES = {
    "text_temp": "text_temp",
    "waveform_temp": "waveform_temp",
    "min_eos_p": "min_eos_p",
    "max_duration": "max_duration_sec",
    "sentence_pause": "sentence_pause_sec",
    "carry_history": "carry_history",
    "speed": "speed",
}


@dataclass(frozen=True)
class SynthesisOptions:
    """How one text is turned into audio. Field names follow Suno's `generate_audio`."""

    # Temperature of the semantic (text) stage; 0 means greedy decoding.
    text_temp: float = 0.7
    # Temperature of the coarse and fine (waveform) stages; 0 means greedy decoding.
    waveform_temp: float = 0.7
    # Random seed; None draws one, and the result reports it so the run can be repeated.
    seed: int | None = None
    # Stop the semantic stage once the end-of-speech probability reaches this (Suno suggests 0.2).
    min_eos_p: float | None = None
    # Cap on the generated audio of each chunk, in seconds; None means Bark's own cap (~15.4 s).
    max_duration_sec: float | None = None
    # Silence between chunks of a long text, in seconds.
    sentence_pause_sec: float = 0.25
    # Feed each chunk's generated tokens to the next as its voice prompt (Suno's long-form way):
    # more natural flow, but chunks run one after another instead of in one batch.
    carry_history: bool = False
    # Tempo factor applied after generation (pitch unchanged), 0.25-4.0.
    speed: float = 1.0
    # Quality control of each chunk (barkserve.qc): None (off), or thresholds and tries; a request
    # may give true (the defaults) or an object such as {"max_error": 0.3, "tries": 3}.
    qc: QualityCheck | None = None
    # Markup (barkserve.markup): read the text as SSML (True), as plain text with `[pause]` tags (False),
    # or by its look (None: SSML when it starts with `<speak>`).
    ssml: bool | None = None
    # Spell out numbers, dates, times, amounts and common abbreviations in the voice's language.
    normalize: bool = True
    # Respellings of whole words (barkserve.markup.lexicon's JSON form), over the server's and the key's.
    lexicon: Lexicon | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "qc", QualityCheck.from_value(self.qc))
        object.__setattr__(self, "lexicon", Lexicon.from_value(self.lexicon))
        if self.ssml is not None and not isinstance(self.ssml, bool):
            raise InvalidRequest(f"ssml must be true, false or null (by the text's look); got {self.ssml!r}")
        if not isinstance(self.normalize, bool):
            raise InvalidRequest(f"normalize must be true or false; got {self.normalize!r}")
        for name in ("text_temp", "waveform_temp"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 5.0:
                raise InvalidRequest(f"{name} must be a number from 0 to 5 (0 = greedy); got {value!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise InvalidRequest(f"seed must be an integer from 0 to 2**63-1; got {self.seed!r}")
        if self.min_eos_p is not None and (not _is_number(self.min_eos_p) or not 0.0 < self.min_eos_p <= 1.0):
            raise InvalidRequest(f"min_eos_p must be a number in (0, 1], e.g. 0.2; got {self.min_eos_p!r}")
        if self.max_duration_sec is not None and (
            not _is_number(self.max_duration_sec) or not 0.0 < self.max_duration_sec <= MAX_DURATION_SEC
        ):
            raise InvalidRequest(
                f"max_duration_sec must be a number in (0, {MAX_DURATION_SEC:.1f}]; got {self.max_duration_sec!r}"
            )

        if not _is_number(self.sentence_pause_sec) or not 0.0 <= self.sentence_pause_sec <= 5.0:
            raise InvalidRequest(f"sentence_pause_sec must be a number from 0 to 5; got {self.sentence_pause_sec!r}")
        if not isinstance(self.carry_history, bool):
            raise InvalidRequest(f"carry_history must be true or false; got {self.carry_history!r}")
        if not _is_number(self.speed) or not 0.25 <= self.speed <= 4.0:
            raise InvalidRequest(f"speed must be a number from 0.25 to 4.0; got {self.speed!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthesisOptions:
        """Build options from a mapping; unknown keys are an error, not ignored."""
        return strict_from_mapping(cls, data, InvalidRequest, "synthesis option")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values (as stored with a job and accepted by `from_dict`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in OPTIONAL}
        if self.qc is not None:  # left out when off, so jobs stored before `qc` existed keep their hash
            data["qc"] = {f.name: getattr(self.qc, f.name) for f in fields(self.qc)}
        # Likewise the markup options, when they are their defaults.
        if self.ssml is not None:
            data["ssml"] = self.ssml
        if not self.normalize:
            data["normalize"] = False
        if self.lexicon is not None:
            data["lexicon"] = self.lexicon.to_json()
        return data

    def with_seed(self, seed: int) -> SynthesisOptions:
        return replace(self, seed=seed)

    def chunk_seed(self, index: int) -> int:
        """The seed of chunk `index`: fixed by the request's seed, whatever runs in parallel."""
        if self.seed is None:
            raise ValueError("the request's seed must be fixed first")
        return (self.seed + index) % (MAX_SEED + 1)

    @property
    def max_semantic_tokens(self) -> int:
        """How many semantic tokens the duration cap allows (at least 1)."""
        if self.max_duration_sec is None:
            return MAX_SEMANTIC_TOKENS
        return max(1, min(MAX_SEMANTIC_TOKENS, math.floor(self.max_duration_sec * SEMANTIC_RATE_HZ)))


def strict_from_mapping(cls: Any, data: Mapping[str, Any], error: type[Exception], what: str) -> Any:
    """`cls(**data)` for a dataclass, raising `error` that lists the valid names for any unknown key."""
    names = sorted(f.name for f in fields(cls))
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise error(f"unknown {what}(s) {unknown}; valid ones are {names}")
    return cls(**dict(data))


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; a JSON `true` is not a seed.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    # An int is always finite (and float() of a 400-digit one would overflow).
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))
