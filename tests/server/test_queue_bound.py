"""max_queue_depth on a real engine queue: the batched engine on the tiny checkpoint, its one slot held."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from barkserve.config import EngineConfig

BOUND = 4
FAST = {"max_duration_sec": 0.1, "seed": 3}
HANG_GUARD_SEC = 120  # a state never reached fails the test here; not a speed assertion


def wait_for(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (other threads make it so); fail if it never does."""
    deadline = time.monotonic() + HANG_GUARD_SEC
    while not condition():
        assert time.monotonic() < deadline, "the state the test waits for never came"
        time.sleep(0.01)


class Held:
    """The engine's one slot, held: its first step waits until `go`, so later chunks stay queued."""

    def __init__(self, app: Flask) -> None:
        synth = app.extensions["barkserve"].synthesizer
        self.synth = synth
        self.scheduler = synth.engine(synth.config.default_model).scheduler
        self.step, self.go = threading.Event(), threading.Event()
        self.most_queued = 0
        iterate, submit = self.scheduler.pipeline.iterate, self.scheduler.submit

        def held_iterate(tasks: list[Any]) -> None:
            if tasks:
                self.step.set()
                self.go.wait(10 * HANG_GUARD_SEC)  # the test sets it in a finally
            iterate(tasks)

        def counted_submit(task: Any) -> Any:
            out = submit(task)
            self.most_queued = max(self.most_queued, self.scheduler.queued)
            return out

        self.scheduler.pipeline.iterate = held_iterate
        self.scheduler.submit = counted_submit


@pytest.fixture()
def app(make_app: Any) -> Iterator[Flask]:
    app: Flask = make_app(max_queue_depth=BOUND, engine=EngineConfig(max_batch_size=1))
    yield app
    app.extensions["barkserve"].synthesizer.close()


def post(app: Flask, results: list[int], text: str = "Hello there.", path: str = "/synthesize") -> threading.Thread:
    """POST `text` to `path` from a thread of its own; its status goes to `results` (-503: a 503 not as promised)."""

    def run() -> None:
        response = app.test_client().post(path, json={"text": text, **FAST})
        overloaded = response.status_code == 503 and response.headers.get("Retry-After") == "5"
        overloaded = overloaded and response.get_json()["error"]["code"] == "server_overloaded"
        results.append(response.status_code if response.status_code != 503 or overloaded else -503)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_queue_past_the_bound_refuses_new_synthesis(app: Flask) -> None:
    held, results = Held(app), []
    # About 150 characters a sentence: each is a chunk of its own (MAX_CHUNK_SEC of speech holds ~180).
    long_text = " ".join(
        f"Sentence number {n} is long enough to fill one whole chunk of speech by itself, with many words in it "
        f"that go on and on, past what one chunk holds."
        for n in range(BOUND + 2)
    )
    threads = [post(app, results, long_text)]  # one request, BOUND + 2 chunks, all sent at once
    try:
        assert held.step.wait(HANG_GUARD_SEC)
        wait_for(lambda: held.synth.queued() == BOUND + 1)  # one chunk runs, the rest wait
        for path in ("/synthesize", "/jobs"):
            answers: list[int] = []
            threads.append(post(app, answers, "Hi.", path))
            # Refused at once; admitted, it would queue its chunk (or, a job, answer 201).
            wait_for(lambda: bool(answers) or held.synth.queued() > BOUND + 1)  # noqa: B023
            assert answers == [503]
        assert app.test_client().get("/health").status_code == 200
    finally:
        held.go.set()
        for thread in threads:
            thread.join(HANG_GUARD_SEC)
    assert results == [200]
    assert app.test_client().post("/synthesize", json={"text": "Hi.", **FAST}).status_code == 200  # drained


def test_requests_arriving_together_at_the_bound_cannot_all_pass(app: Flask) -> None:
    held, results = Held(app), []
    threads = [post(app, results)]  # it takes the engine's one slot: in progress, nothing queued
    arrivals = 0
    arrived, release = threading.Condition(), threading.Event()
    submit = held.scheduler.submit

    def gated_submit(task: Any) -> Any:  # between the check and the queue: everyone who got through waits
        nonlocal arrivals
        with arrived:
            arrivals += 1
            arrived.notify_all()
        release.wait(10 * HANG_GUARD_SEC)
        return submit(task)

    try:
        assert held.step.wait(HANG_GUARD_SEC)
        held.scheduler.submit = gated_submit
        together = 2 * BOUND
        threads += [post(app, results) for _ in range(together)]
        # Everyone either got through the check (and waits at the queue) or was refused.
        wait_for(lambda: arrivals + results.count(503) == together)
        # The first request counts as 1, so BOUND - 1 more fit, plus one at the bound (503 only over it).
        assert (arrivals, results.count(503)) == (BOUND, together - BOUND)
        release.set()
        wait_for(lambda: held.synth.queued() == BOUND)
        assert held.most_queued == BOUND
    finally:
        release.set()
        held.go.set()
        for thread in threads:
            thread.join(HANG_GUARD_SEC)
    assert sorted(results) == [200] * (BOUND + 1) + [503] * (2 * BOUND - BOUND)
