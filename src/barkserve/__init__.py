"""barkserve: a self-hosted text-to-speech server and Python library for Suno's Bark."""

from barkserve.config import ServerConfig
from barkserve.errors import BarkServeError
from barkserve.options import SynthesisOptions
from barkserve.synthesizer import SynthesisResult, Synthesizer

__all__ = ["BarkServeError", "ServerConfig", "SynthesisOptions", "SynthesisResult", "Synthesizer"]
__version__ = "0.1.0"
