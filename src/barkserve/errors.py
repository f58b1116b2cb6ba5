"""One exception hierarchy for the library; the HTTP layer maps it to status codes."""

from __future__ import annotations


class BarkServeError(Exception):
    """Base class: `message` says what was wrong and how to fix it."""

    code = "barkserve_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(BarkServeError):
    """The caller sent a value that cannot be used as it is."""

    code = "invalid_request"
    status = 400


class InvalidVoice(InvalidRequest):
    """A voice name, number or prompt file that cannot be used."""

    code = "invalid_voice"


class InvalidModel(InvalidRequest):
    """A model name that is not on the server's allowlist."""

    code = "invalid_model"


class TextTooLong(InvalidRequest):
    """Text over the configured or the model's limit."""

    code = "text_too_long"


class NoSpeech(BarkServeError):
    """The model ended the speech before any sound: there is no audio to encode or save."""

    code = "no_speech"
    status = 422

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "Bark ended the speech before making any sound (end-of-speech was its first token), so "
            "there is no audio; try another seed, a higher min_eos_p (or none), or a longer text"
        )


class NotFound(BarkServeError):
    code = "not_found"
    status = 404


class JobPlanChanged(BarkServeError):
    """A resumed job whose text no longer splits into the chunks it was started with."""

    code = "job_plan_changed"
    status = 409


class ModelUnavailable(BarkServeError):
    """The model's weights cannot be loaded (offline, missing, broken)."""

    code = "model_unavailable"
    status = 503


def model_unavailable(name: str, reason: str) -> ModelUnavailable:
    """A `ModelUnavailable` that names the model and the ways out."""
    return ModelUnavailable(
        f"model {name!r} could not be loaded: {reason}. Ways out: connect to the internet once so the "
        f"Hugging Face cache (HF_HOME) holds it; or pass a local checkpoint folder with --model /path/to/bark; "
        f"or, to try the server offline, build a random test checkpoint with `barkserve make-tiny ./tiny-bark` "
        f"and run with --model ./tiny-bark (its audio is noise)."
    )


class ConfigError(BarkServeError):
    """A server or engine setting that cannot work; raised at start-up."""

    code = "config_error"
    status = 500
