"""Per-key limits over the `limits` library: requests per minute and audio seconds per day.

Both counters live in one `limits` storage (memory:// by default; redis:// or memcached:// let
several processes share them). Requests use a moving window: at most N in any 60 seconds. Audio is
charged after it is made, in milliseconds, against a fixed window of a day that starts with the
key's first charged audio; a request is refused once the day's quota is used up (the request that
crosses the line still finishes: its length is only known when it is made).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.errors import ConfigurationError, StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from barkserve.errors import ConfigError, StorageUnavailable

REQUESTS = "barkserve-requests"
AUDIO = "barkserve-audio-ms"


class UsageLimiter:
    """Counts each key's requests and audio; answers how long to wait when a key is over its limit."""

    def __init__(self, storage: str | Storage = "memory://") -> None:
        self.storage = open_storage(storage) if isinstance(storage, str) else storage
        self._requests = MovingWindowRateLimiter(self.storage)
        self._audio = FixedWindowRateLimiter(self.storage)

    def hit_request(self, key_id: str, per_minute: int | None) -> float | None:
        """Count one request of `key_id`; None if allowed, else the seconds until one more is."""
        if per_minute is None:
            return None
        item = RateLimitItemPerMinute(per_minute, namespace=REQUESTS)
        with storage_errors():
            if self._requests.hit(item, key_id):
                return None
            return self._wait(self._requests.get_window_stats(item, key_id).reset_time)

    def audio_wait(self, key_id: str, per_day: int | None) -> float | None:
        """None while `key_id` has audio seconds left today, else the seconds until its quota renews."""
        if per_day is None:
            return None
        item = _audio_item(per_day)
        with storage_errors():
            if self._audio.test(item, key_id):
                return None
            return self._wait(self._audio.get_window_stats(item, key_id).reset_time)

    def charge_audio(self, key_id: str, per_day: int | None, seconds: float) -> None:
        """Count `seconds` of audio made for `key_id` (nothing when it has no quota)."""
        cost = round(seconds * 1000)
        if per_day is not None and cost > 0:
            with storage_errors():
                self._audio.hit(_audio_item(per_day), key_id, cost=cost)

    def audio_used(self, key_id: str, per_day: int) -> float:
        """Audio seconds charged to `key_id` in its current day."""
        stats = self._audio.get_window_stats(_audio_item(per_day), key_id)
        return (per_day * 1000 - stats.remaining) / 1000

    @staticmethod
    def _wait(reset_time: float) -> float:
        return max(1.0, reset_time - time.time())


def open_storage(uri: str) -> Storage:
    """The `limits` storage of a URI (memory://, redis://...); a scheme it cannot use is a ConfigError."""
    try:
        storage = storage_from_string(uri, wrap_exceptions=True)
    except ConfigurationError as exc:
        raise ConfigError(
            f"limits_storage {uri!r} cannot be used: {exc}. Use memory://, or install the client its scheme "
            f"needs (e.g. pip install 'limits[redis]') for a shared store"
        ) from exc
    if not isinstance(storage, Storage):
        raise ConfigError(f"limits_storage {uri!r} is an asynchronous storage; use its synchronous scheme")
    return storage


@contextmanager
def storage_errors() -> Iterator[None]:
    """A counter store that cannot be reached (a redis:// server down) is a 503, not a 500."""
    try:
        yield
    except StorageError as exc:
        raise StorageUnavailable(
            f"the per-key limits store cannot be reached ({exc.storage_error}); retry shortly. The operator "
            f"should check the limits_storage setting"
        ) from exc


def _audio_item(per_day: int) -> RateLimitItemPerDay:
    return RateLimitItemPerDay(per_day * 1000, namespace=AUDIO)
