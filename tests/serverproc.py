"""Start `barkserve serve` as a real process for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT_SEC = 180  # a guard against a hung start, not a speed assertion


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(model_dir: Path, root: Path, *extra: str) -> Iterator[str]:
    """Start `barkserve serve` as a real process on 127.0.0.1; yield its base URL; stop it."""
    import requests

    port = free_port()
    env = {**os.environ, "BARKSERVE_THREADS": "8", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "barkserve.cli", "serve", "--model", str(model_dir), "--port", str(port)]
    cmd += ["--output-dir", str(root / "out"), "--voices-dir", str(root / "voices"), "--jobs-dir", str(root / "jobs")]
    cmd += ["--offline", "--preload", *extra]
    log_path = root / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_SEC
        try:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"server exited: {log_path.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail("server did not start")
                try:
                    if requests.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def create_key(root: Path, name: str, scopes: str, *extra: str) -> str:
    """`barkserve keys create` against the database `running_server(..., root)` uses; returns the secret."""
    cmd = [sys.executable, "-m", "barkserve.cli", "keys", "create", "--name", name, "--scopes", scopes]
    done = subprocess.run([*cmd, "--jobs-dir", str(root / "jobs"), *extra], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


WAIT_SEC = 600  # guards against a hang; not a speed assertion


def wait_for(predicate: Callable[[], Any], what: str, every: float = 0.2) -> Any:
    """`predicate()`'s first true value, polled every `every` seconds; the test fails after WAIT_SEC."""
    deadline = time.monotonic() + WAIT_SEC
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")
