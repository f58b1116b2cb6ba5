"""Per-key limits: a moving minute of requests and a day of audio seconds, on a clock the test moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import time_machine
from limits.errors import StorageError
from limits.storage import MemoryStorage

from barkserve.auth.limiter import UsageLimiter
from barkserve.errors import ConfigError, StorageUnavailable


@pytest.fixture()
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(time.time(), tick=False) as traveller:
        yield traveller


def test_requests_over_the_rate_wait_until_the_oldest_leaves_the_minute(clock: time_machine.Coordinates) -> None:
    limiter = UsageLimiter()
    assert [limiter.hit_request("k", 3) for _ in range(3)] == [None, None, None]
    wait = limiter.hit_request("k", 3)
    assert wait is not None and 59 <= wait <= 60
    assert limiter.hit_request("other", 3) is None  # keys are counted apart
    clock.shift(30)
    wait = limiter.hit_request("k", 3)
    assert wait is not None and 29 <= wait <= 30
    clock.shift(30.5)
    assert limiter.hit_request("k", 3) is None
    assert limiter.hit_request("k", None) is None  # no limit set


def test_audio_is_refused_once_the_day_is_used_and_renews_a_day_later(clock: time_machine.Coordinates) -> None:
    limiter = UsageLimiter()
    assert limiter.audio_wait("k", 10) is None
    limiter.charge_audio("k", 10, 6.5)
    assert limiter.audio_wait("k", 10) is None and limiter.audio_used("k", 10) == pytest.approx(6.5)
    limiter.charge_audio("k", 10, 6.5)  # the request that crosses the line still counts in full
    wait = limiter.audio_wait("k", 10)
    assert wait is not None and 86_399 <= wait <= 86_400
    clock.shift(86_401)
    assert limiter.audio_wait("k", 10) is None and limiter.audio_used("k", 10) == 0


def test_concurrent_requests_get_exactly_the_rate(clock: time_machine.Coordinates) -> None:
    limiter, rate, threads = UsageLimiter(), 25, 8
    allowed: list[bool] = []
    lock, start = threading.Lock(), threading.Barrier(threads)
    # The first hit makes the key's lock in the memory storage; the race is over the rest of the minute.
    assert limiter.hit_request("shared", rate) is None

    def worker() -> None:
        start.wait()
        for _ in range(10):
            ok = limiter.hit_request("shared", rate) is None
            with lock:
                allowed.append(ok)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(allowed) == 80 and sum(allowed) == rate - 1


def test_an_unusable_storage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="limits_storage 'nosuch://x' cannot be used"):
        UsageLimiter("nosuch://x")


class BrokenStorage(MemoryStorage):
    """A shared store that went away: what a redis:// storage raises when wrapping its errors."""

    def acquire_entry(self, *args: object, **kwargs: object) -> bool:
        raise StorageError(ConnectionError("connection refused"))

    def get(self, key: str) -> int:
        raise StorageError(ConnectionError("connection refused"))


def test_an_unreachable_store_is_storage_unavailable() -> None:
    limiter = UsageLimiter(BrokenStorage())
    with pytest.raises(StorageUnavailable, match="limits store cannot be reached"):
        limiter.hit_request("k", 5)
    with pytest.raises(StorageUnavailable):
        limiter.audio_wait("k", 5)
    assert limiter.hit_request("k", None) is None  # keys without limits never touch the store
