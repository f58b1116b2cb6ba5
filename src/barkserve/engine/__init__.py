"""Generation engines: the only code that runs the model.

`GenerationRequest` in, `GeneratedAudio` out. `ReferenceEngine` runs transformers'
`BarkModel.generate` one request at a time; faster engines implement the same `Engine` protocol.
"""

from barkserve.engine.base import Engine, GeneratedAudio, GenerationRequest
from barkserve.engine.reference import ReferenceEngine

__all__ = ["Engine", "GeneratedAudio", "GenerationRequest", "ReferenceEngine"]
