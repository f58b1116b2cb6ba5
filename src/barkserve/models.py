"""Model loading: allowlist, device / dtype / attention / offload, one load per model, clear failures."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from barkserve.bark import SAMPLE_RATE
from barkserve.config import MODEL_ALIASES, ServerConfig, canonical_model
from barkserve.errors import ConfigError, InvalidModel, ModelUnavailable, model_unavailable
from barkserve.voices import PresetIndex, VoiceLibrary

log = logging.getLogger(__name__)
# A failed load is not retried on every request; it is tried again after this many seconds.
RETRY_AFTER_SEC = 60.0


@dataclass
class LoadedModel:
    """A loaded Bark checkpoint and what belongs to it."""

    name: str
    model: Any  # transformers.BarkModel
    tokenizer: Any
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    sample_rate: int


def pick_device(requested: str) -> str:
    """`auto` means cuda, then mps, then cpu; an explicit device must exist."""
    import torch

    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if requested == "mps" and not has_mps:
        raise ConfigError("device 'mps' was asked for but MPS is not available; use --device auto or cpu")
    return requested


def pick_dtype(requested: str, device: str) -> Any:
    """`auto` means float16 on CUDA and float32 elsewhere."""
    import torch

    if requested == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    if requested == "float16" and device == "cpu":
        raise ConfigError("float16 is not supported on the CPU; use --dtype float32 or bfloat16")
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[requested]


def check_attention(attention: str, device: str) -> None:
    if attention == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if device != "cuda" or not is_flash_attn_2_available():
            raise ConfigError(
                "attention 'flash_attention_2' needs a CUDA GPU and the flash-attn package; use --attention eager"
            )


def load_model(name: str, config: ServerConfig) -> LoadedModel:
    """Load one checkpoint with the configured device, dtype and attention.

    `name` is a served name (loaded from its source, a hub id or folder) or a hub id or folder itself.
    Errors name the model by `name`, never by the folder it is loaded from.
    """
    import torch
    from transformers import AutoTokenizer, BarkModel

    source = config.model_source(name)
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    check_attention(config.attention, device)
    local = Path(source).is_dir()
    if not local and ("/" not in source or Path(source).suffix or source.startswith((".", "/"))):
        raise model_unavailable(name, "it is neither a local folder nor a hub id")
    started = time.perf_counter()
    model: Any
    try:
        model = BarkModel.from_pretrained(
            source, dtype=dtype, attn_implementation=config.attention, local_files_only=config.offline
        )
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=config.offline)
    except (OSError, ValueError) as exc:
        raise model_unavailable(name, hide_source(str(exc).splitlines()[0], source, name)) from exc
    if config.cpu_offload:
        if device != "cuda":
            raise ConfigError("--cpu-offload moves stages to a GPU one at a time; it needs a CUDA device")
        try:
            model.enable_cpu_offload()
        except ImportError as exc:
            raise ConfigError("--cpu-offload needs accelerate: pip install 'barkserve[offload]'") from exc
    else:
        model.to(device)
    model.eval()
    log.info("loaded %s on %s (%s) in %.1f s", name, device, dtype, time.perf_counter() - started)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        device=torch.device(device),
        dtype=dtype,
        sample_rate=int(getattr(model.generation_config, "sample_rate", SAMPLE_RATE)),
    )


def hide_source(text: str, source: str, name: str) -> str:
    """`text` with the folder a model is loaded from replaced by its served name."""
    if source == name:
        return text
    for path in sorted({source, str(Path(source).expanduser().resolve())}, key=len, reverse=True):
        text = text.replace(path, name)
    return text


class AdapterCatalog(Protocol):
    """The LoRA adapters a server has (engine/adapters.py `AdapterLibrary`), as the registry sees them."""

    def names_for(self, source: str) -> list[str]:
        """The adapters trained on the model loaded from `source`."""
        ...


# "<served model>+<adapter>" names a LoRA adapter of a served model.
ADAPTER_SEPARATOR = "+"


class ModelRegistry:
    """Loads each allowed model once (at start-up or first use), thread-safely.

    With `adapters`, a request may also name "<allowed model>+<adapter>": an adapter of the
    catalog trained on that model. It is served by that model's engine (its weights are loaded
    there), so `get` and `voices` of such a name are those of the model.
    """

    def __init__(self, config: ServerConfig, loader: Any = load_model, adapters: AdapterCatalog | None = None) -> None:
        self.config = config
        self.adapters = adapters
        self._loader = loader
        self._loaded: dict[str, LoadedModel] = {}
        self._failed: dict[str, tuple[float, ModelUnavailable]] = {}
        self._locks = {name: threading.Lock() for name in config.allowed_models}
        self._voices: dict[str, VoiceLibrary] = {}
        self._voices_lock = threading.Lock()

    def resolve(self, requested: object) -> str:
        """The served name a request's `model` field means; anything not allowlisted is an `InvalidModel`.

        "<model>+<adapter>" (the model by any name it is accepted under) means that model's adapter.
        """
        if requested is None:
            return self.config.default_model
        served = self.config.served_name_of(requested) if isinstance(requested, str) else None
        if served is None and isinstance(requested, str) and ADAPTER_SEPARATOR in requested:
            model, _, adapter = requested.rpartition(ADAPTER_SEPARATOR)
            base = self.config.served_name_of(model)
            if base is not None and adapter in self.adapters_of(base):
                return f"{base}{ADAPTER_SEPARATOR}{adapter}"
        if served is None:
            sources = set(self.config.model_sources.values())
            aliases = sorted(a for a, target in MODEL_ALIASES.items() if target in sources)
            allowed = list(self.config.allowed_models)
            adapters = [n for n in self.served_names() if n not in allowed]
            also = f", adapters: {adapters}" if adapters else ""
            raise InvalidModel(f"model must be one of {allowed} (aliases: {aliases}{also}); got {requested!r}")
        return served

    def adapters_of(self, name: str) -> list[str]:
        """The adapters served on the allowed model `name`: those of the catalog trained on it."""
        if self.adapters is None or name not in self.config.model_sources:
            return []
        return self.adapters.names_for(self.config.model_source(name))

    def served_names(self) -> list[str]:
        """Every name a request may use: the allowed models, each followed by its adapters' names."""
        return [
            n
            for model in self.config.allowed_models
            for n in (model, *(f"{model}{ADAPTER_SEPARATOR}{a}" for a in self.adapters_of(model)))
        ]

    def split(self, name: str) -> tuple[str, str | None]:
        """(model, adapter or None) of a served name that `resolve` returned."""
        if name in self.config.model_sources or ADAPTER_SEPARATOR not in name:
            return name, None
        model, _, adapter = name.rpartition(ADAPTER_SEPARATOR)
        return model, adapter

    def voices(self, name: str) -> VoiceLibrary:
        """The voice library of an allowed model (an adapter's: its model's); reads its preset index."""
        name = self.split(name)[0]
        with self._voices_lock:
            if name not in self._voices:
                source = self.config.model_source(name)
                presets = PresetIndex(source, local_files_only=self.config.offline)
                try:
                    presets.names()  # reads the index now, so an unreachable model is reported as such
                except ModelUnavailable as exc:
                    hidden = ModelUnavailable(hide_source(exc.message, source, name))
                    self._failed[name] = (time.monotonic(), hidden)
                    raise hidden from exc
                self._voices[name] = VoiceLibrary(presets, self.config.voices_dir, self.config.default_voice)
            return self._voices[name]

    def get(self, name: str) -> LoadedModel:
        """The loaded model (an adapter's: its model), loading it now if this is its first use."""
        name = self.split(name)[0]
        if name in self._loaded:
            return self._loaded[name]
        with self._locks[name]:
            if name in self._loaded:
                return self._loaded[name]
            failed = self._failed.get(name)
            if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_SEC:
                raise failed[1]
            try:
                loaded = self._loader(name, self.config)
            except ModelUnavailable as exc:
                self._failed[name] = (time.monotonic(), exc)
                raise
            self._failed.pop(name, None)
            self._loaded[name] = loaded
            return loaded

    def preload(self) -> None:
        """Load every allowed model now; failures are logged and reported by `status`."""
        for name in self.config.allowed_models:
            try:
                self.get(name)
            except ModelUnavailable as exc:
                log.error("%s", exc.message)

    def status(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in self.config.allowed_models:
            if name in self._loaded:
                m = self._loaded[name]
                out[name] = {"state": "loaded", "device": str(m.device), "dtype": str(m.dtype).split(".")[-1]}
            elif name in self._failed:
                out[name] = {"state": "unavailable", "error": self._failed[name][1].message}
            else:
                out[name] = {"state": "not_loaded"}
        return out


__all__ = ["AdapterCatalog", "LoadedModel", "ModelRegistry", "canonical_model", "load_model"]
