"""Errors of voice cloning; each maps to one HTTP status through `barkserve.errors`."""

from __future__ import annotations

from barkserve.errors import BarkServeError, ConfigError, InvalidRequest, InvalidVoice


class InvalidAudio(InvalidRequest):
    """A recording that cannot be turned into a voice: too short, silent, corrupt."""

    code = "invalid_audio"


class UnsupportedAudio(InvalidAudio):
    """A file that is not wav, flac, mp3 or ogg."""

    code = "unsupported_audio_format"
    status = 415


class AudioTooLarge(InvalidAudio):
    """An upload over the configured size limit."""

    code = "audio_too_large"
    status = 413


class VoiceExists(InvalidVoice):
    """A custom voice or preset already has the requested name."""

    code = "voice_exists"
    status = 409


class VoiceProtected(InvalidVoice):
    """Presets ship with the model and cannot be deleted."""

    code = "voice_protected"
    status = 403


class QuantizerError(ConfigError):
    """A quantizer checkpoint that cannot be read or does not fit the configured HuBERT."""

    code = "quantizer_error"


class DatasetError(BarkServeError):
    """A training dataset folder that is missing, empty or inconsistent."""

    code = "dataset_error"
    status = 400
