"""Build the engine a configuration asks for (kept out of `engine/__init__` so the package has no cycle)."""

from __future__ import annotations

from barkserve.config import EngineConfig
from barkserve.engine.base import Engine
from barkserve.models import LoadedModel


def make_engine(loaded: LoadedModel, config: EngineConfig) -> Engine:
    """The engine `config.kind` names, over an already loaded model."""
    if config.kind == "reference":
        from barkserve.engine.reference import ReferenceEngine

        return ReferenceEngine(loaded)
    from barkserve.engine.batched import BatchedEngine

    return BatchedEngine(loaded, config)
