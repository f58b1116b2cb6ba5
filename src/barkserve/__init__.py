"""barkserve: a self-hosted text-to-speech server and Python library for Suno's Bark."""

from importlib.metadata import PackageNotFoundError, version

from barkserve.config import EngineConfig, ServerConfig
from barkserve.errors import BarkServeError
from barkserve.options import SynthesisOptions
from barkserve.synthesizer import ChunkAudio, SynthesisInfo, SynthesisResult, Synthesizer

try:
    __version__ = version("barkserve")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BarkServeError",
    "ChunkAudio",
    "EngineConfig",
    "ServerConfig",
    "SynthesisInfo",
    "SynthesisOptions",
    "SynthesisResult",
    "Synthesizer",
    "__version__",
]
