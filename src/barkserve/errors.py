"""Every barkserve error, in one hierarchy. Classes carry a `code`; `server/errors.py` maps them to HTTP."""

from __future__ import annotations


class BarkServeError(Exception):
    """Base class: `message` says what was wrong and how to fix it."""

    code = "barkserve_error"
    # Whether the same work may succeed if tried again (a passing condition, not the request itself).
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_retryable(exc: BaseException) -> bool:
    """Whether work that raised `exc` is worth trying again; every retry loop (jobs, batch, Ray) asks this.

    A barkserve error says so itself. An OS error (disk full, permissions) would meet the same wall
    again. Anything else is unexpected (CUDA out of memory, a dead worker, a bug) and gets its tries.
    """
    if isinstance(exc, BarkServeError):
        return exc.retryable
    return not isinstance(exc, OSError)


class InvalidRequest(BarkServeError):
    """The caller sent a value that cannot be used as it is."""

    code = "invalid_request"


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

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "Bark ended the speech before making any sound (end-of-speech was its first token), so "
            "there is no audio; try another seed, a higher min_eos_p (or none), or a longer text"
        )


class NotFound(BarkServeError):
    """No such job, voice, file or stream."""

    code = "not_found"


class Conflict(BarkServeError):
    """The resource is not in a state that allows this (a finished job, a reused Idempotency-Key)."""

    code = "conflict"


class TooManyVoices(Conflict):
    """A key that stores as many custom voices as the server allows it (setting max_voices_per_key)."""

    code = "too_many_voices"


class JobPlanChanged(Conflict):
    """A resumed job whose text no longer splits into the chunks it was started with."""

    code = "job_plan_changed"


class LeaseLost(Conflict):
    """A job's lease is no longer this worker's (taken over, or the job stopped): it must stop working on it."""

    code = "lease_lost"


class ModelUnavailable(BarkServeError):
    """The model's weights cannot be loaded (offline, missing, broken)."""

    code = "model_unavailable"
    retryable = True


def model_unavailable(name: str, reason: str) -> ModelUnavailable:
    """A `ModelUnavailable` that names the model and the ways out."""
    return ModelUnavailable(
        f"model {name!r} could not be loaded: {reason}. Ways out: connect to the internet once so the "
        f"Hugging Face cache (HF_HOME) holds it; or pass a local checkpoint folder with --model /path/to/bark; "
        f"or, to try the server offline, build a random test checkpoint with `barkserve make-tiny ./tiny-bark` "
        f"and run with --model ./tiny-bark (its audio is noise)."
    )


class StorageFull(BarkServeError):
    """The disk under one of the server's folders is full: nothing was saved."""

    code = "storage_full"


class StorageUnavailable(BarkServeError):
    """One of the server's folders cannot be written (read-only, permissions)."""

    code = "storage_unavailable"


class ConfigError(BarkServeError):
    """A server or engine setting that cannot work; raised at start-up."""

    code = "config_error"


class QuantizerError(ConfigError):
    """A quantizer checkpoint that cannot be read or does not fit the configured HuBERT."""

    code = "quantizer_error"


class InvalidAudio(InvalidRequest):
    """A recording that cannot be turned into a voice: too short, silent, corrupt."""

    code = "invalid_audio"


class UnsupportedAudio(InvalidAudio):
    """A file that is not wav, flac, mp3 or ogg."""

    code = "unsupported_audio_format"


class AudioTooLarge(InvalidAudio):
    """An upload over the configured size limit."""

    code = "audio_too_large"


class VoiceExists(InvalidVoice):
    """A custom voice or preset already has the requested name."""

    code = "voice_exists"


class VoiceProtected(InvalidVoice):
    """Presets ship with the model and cannot be deleted."""

    code = "voice_protected"


class DatasetError(BarkServeError):
    """A training dataset folder that is missing, empty or inconsistent."""

    code = "dataset_error"


class GenerationCancelled(BarkServeError):
    """The request was cancelled (its caller left or timed out) before its audio was ready."""

    code = "generation_cancelled"


class EngineClosed(GenerationCancelled):
    """The engine was shut down before the request could run."""

    code = "engine_closed"
    retryable = True


class ScorerUnavailable(ModelUnavailable):
    """A quality scorer's model (ASR, speaker encoder) that cannot be loaded; the message names the ways out."""

    code = "scorer_unavailable"


class InvalidBook(InvalidRequest):
    """An ebook that cannot be read: corrupt, no text layer, an empty chapter, a bad voice tag."""

    code = "invalid_book"


class UnsupportedBook(InvalidBook):
    """A file type that is not a readable book (.epub, .pdf, .html, .md, .txt)."""

    code = "unsupported_book_format"


class ProtectedBook(InvalidBook):
    """An ebook whose content is encrypted (DRM): its text cannot be read."""

    code = "protected_book"


class BookTooLarge(InvalidBook):
    """A book file over the `max_book_bytes` setting."""

    code = "book_too_large"


class CastTextChanged(BarkServeError):
    """The lines of a full cast do not join back to the chapter's text (a bug: the book is not read so)."""

    code = "cast_text_changed"


class CastLabelsUnusable(BarkServeError):
    """The cast LLM's answer cannot be used (unreachable, timed out, not the labels asked for): the
    rules' labels stay, with a warning; it never reaches a client."""

    code = "cast_labels_unusable"


class AlignerUnavailable(ModelUnavailable):
    """The CTC model that times caption words cannot be loaded; the message names the ways out."""

    code = "aligner_unavailable"


class AlignmentError(BarkServeError):
    """Word timing found no alignment of a caption's text to its audio (callers fall back to sentence timing)."""

    code = "alignment_failed"


class RayUnavailable(ConfigError):
    """Ray is not installed, or the Ray cluster named cannot be reached (`--ray ADDRESS`)."""

    code = "ray_unavailable"


class ReplicaLost(BarkServeError):
    """The engine replica that held a request died, and retrying on another replica failed too."""

    code = "replica_lost"
    retryable = True


class ConsentRequired(InvalidRequest):
    """A voice upload from beyond this machine without `consent=true`."""

    code = "consent_required"


class BatchInputError(InvalidRequest):
    """A `barkserve batch` input file with lines that are not valid items (the message lists them)."""

    code = "batch_input_invalid"


class NotOnRay(BarkServeError):
    """A feature that needs the model's weights in the HTTP process, which `serve --ray` keeps in replicas."""

    code = "not_available_on_ray"


class Unauthorized(BarkServeError):
    """No API key, a malformed `Authorization` header, or a key that is unknown, wrong or revoked."""

    code = "invalid_api_key"


class Forbidden(BarkServeError):
    """A valid API key without the scope the route needs."""

    code = "insufficient_scope"

    def __init__(self, message: str, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


class RateLimited(BarkServeError):
    """A key over its requests per minute or its audio seconds per day; `retry_after` says when to retry."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(BarkServeError):
    """The engine's queue is over `max_queue_depth`: new synthesis is refused until it drains."""

    code = "server_overloaded"
    retryable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryFailed(BarkServeError):
    """One attempt at a job notification (webhook, Audiobookshelf upload) that did not deliver: the
    receiver's `status` (None: no answer) and whether trying again can help (`final`: it cannot)."""

    code = "delivery_failed"

    def __init__(self, message: str, status: int | None = None, final: bool = False) -> None:
        super().__init__(message)
        self.status, self.final = status, final
