"""/health and /metrics answer while synthesis holds every worker thread (the real waitress server, in process)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import requests
from waitress import wasyncore

from barkserve.cli.serve import waitress_settings
from barkserve.server.wsgi import make_server
from support import FakeEngine

THREADS = 3
HANG_GUARD_SEC = 60  # a request that never gets a worker fails the test here; not a speed assertion


class HeldEngine(FakeEngine):
    """FakeEngine whose every generation waits until the test lets it go: synthesis holds its thread."""

    entered = threading.Semaphore(0)
    release = threading.Event()

    def generate(self, request: Any) -> Any:
        HeldEngine.entered.release()
        HeldEngine.release.wait(10 * HANG_GUARD_SEC)  # the test sets it in a finally
        return super().generate(request)


@contextlib.contextmanager
def serving(app: Any, threads: int) -> Iterator[str]:
    """`app` on barkserve's waitress server on a free port of 127.0.0.1; yields its base URL."""
    config = app.extensions["barkserve"].config
    server = make_server(app, {**waitress_settings(config), "port": 0, "threads": threads})
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown(timeout=HANG_GUARD_SEC)
        wasyncore.close_all(server._map)
        loop.join(HANG_GUARD_SEC)


def test_health_and_metrics_answer_while_every_worker_synthesizes(make_app: Any) -> None:
    app = make_app(engine_factory=HeldEngine)
    HeldEngine.release.clear()
    with serving(app, THREADS) as base:
        answers: list[int] = []

        def speak() -> None:
            body = {"text": "Hello there.", "seed": 1}
            answers.append(requests.post(f"{base}/synthesize", json=body, timeout=HANG_GUARD_SEC).status_code)

        clients = [threading.Thread(target=speak) for _ in range(THREADS + 2)]
        for client in clients:
            client.start()
        try:
            for _ in range(THREADS):  # every worker thread of the server is now inside a synthesis
                assert HeldEngine.entered.acquire(timeout=HANG_GUARD_SEC)
            assert not HeldEngine.entered.acquire(timeout=0)  # the two extra clients wait for a worker
            health = requests.get(f"{base}/health", timeout=HANG_GUARD_SEC)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            metrics = requests.get(f"{base}/metrics", timeout=HANG_GUARD_SEC)
            assert metrics.status_code == 200 and "barkserve_" in metrics.text
            assert answers == []  # nothing synthesized yet: the health checks did not wait for it
        finally:
            HeldEngine.release.set()
            for client in clients:
                client.join(HANG_GUARD_SEC)
    assert answers == [200] * (THREADS + 2)
