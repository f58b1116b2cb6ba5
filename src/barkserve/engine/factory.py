"""Build the engine a configuration asks for (kept out of `engine/__init__` so the package has no cycle)."""

from __future__ import annotations

from barkserve.config import EngineConfig
from barkserve.engine.adapters import Adapter
from barkserve.engine.base import Engine
from barkserve.models import LoadedModel


def make_engine(loaded: LoadedModel, config: EngineConfig, adapters: list[Adapter] | None = None) -> Engine:
    """The engine `config.kind` names, over an already loaded model, serving its LoRA `adapters`."""
    if config.kind == "reference":
        from barkserve.engine.reference import ReferenceEngine

        return ReferenceEngine(loaded, adapters)
    from barkserve.engine.batched import BatchedEngine

    return BatchedEngine(loaded, config, adapters=adapters)
