"""Settings of the batched engine: one frozen dataclass, validated once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from barkserve.errors import ConfigError

QUANTIZE_CHOICES = (None, "int8")
KERNEL_CHOICES = ("auto", "packed", "torch")


@dataclass(frozen=True)
class EngineConfig:
    """How the batched engine schedules and runs work."""

    # Most rows one stage (semantic or coarse) runs at once; the fine stage and codec use it too.
    max_batch_size: int = 8
    # How long an idle engine waits for more requests before it starts a batch (milliseconds).
    max_wait_ms: float = 10.0
    # Run the per-token decode step over fixed shapes under `torch.compile` (CUDA graphs on a GPU).
    compile: bool = False
    # "int8": dynamic int8 quantization of the Linear layers on the CPU. It changes the outputs (no
    # longer token-identical to the fp32 reference); None keeps the checkpoint's weights as they are.
    quantize: str | None = None
    # Matrix kernels (engine/kernels.py): "auto" runs fp32 CPU Linear layers through oneDNN on the
    # checkpoint's weights, "packed" on a packed copy (faster batched decode, ~1 GB more for
    # bark-small), "torch" runs the checkpoint's nn.Linear layers as they are.
    kernels: str = "auto"
    # Seconds `generate` waits for its result before it cancels the request; None waits for ever.
    request_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_batch_size, int)
            or isinstance(self.max_batch_size, bool)
            or not (1 <= self.max_batch_size <= 256)
        ):
            raise ConfigError(f"max_batch_size must be an integer from 1 to 256; got {self.max_batch_size!r}")
        if not isinstance(self.max_wait_ms, int | float) or not 0 <= self.max_wait_ms <= 10_000:
            raise ConfigError(f"max_wait_ms must be a number from 0 to 10000; got {self.max_wait_ms!r}")
        if self.quantize not in QUANTIZE_CHOICES:
            raise ConfigError(f"quantize must be 'int8' or None; got {self.quantize!r}")
        if self.kernels not in KERNEL_CHOICES:
            raise ConfigError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}; got {self.kernels!r}")
        if self.request_timeout_s is not None and (
            not isinstance(self.request_timeout_s, int | float) or self.request_timeout_s <= 0
        ):
            raise ConfigError(f"request_timeout_s must be a positive number or None; got {self.request_timeout_s!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineConfig:
        """Build a config from a mapping; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown engine setting(s) {unknown}; valid settings are {sorted(known)}")
        return cls(**dict(data))
