"""Voice cloning: a recording -> a Bark voice prompt; and the audio -> semantic-token quantizer."""

from barkserve.cloning.clone import Cloner, CloneResult, build_prompt

__all__ = ["CloneResult", "Cloner", "build_prompt"]
