"""Generation engines: the only code that runs the model.

`GenerationRequest` in, `GeneratedAudio` out. `BatchedEngine` batches requests continuously
with its own KV-cached loops; `ReferenceEngine` runs transformers' own stages one request at a time.
Both implement the `Engine` protocol. (`BatchedEngine` is imported from `barkserve.engine.batched`.)
"""

from barkserve.config import EngineConfig
from barkserve.engine.base import Engine, EngineLoad, GeneratedAudio, GenerationRequest, QueuingEngine
from barkserve.engine.reference import ReferenceEngine

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineLoad",
    "GeneratedAudio",
    "GenerationRequest",
    "QueuingEngine",
    "ReferenceEngine",
]
