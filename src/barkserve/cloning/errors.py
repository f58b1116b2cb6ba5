"""Errors of voice cloning (they live in `barkserve.errors`; this module keeps the old import path)."""

from barkserve.errors import (
    AudioTooLarge,
    DatasetError,
    InvalidAudio,
    QuantizerError,
    UnsupportedAudio,
    VoiceExists,
    VoiceProtected,
)

__all__ = [
    "AudioTooLarge",
    "DatasetError",
    "InvalidAudio",
    "QuantizerError",
    "UnsupportedAudio",
    "VoiceExists",
    "VoiceProtected",
]
