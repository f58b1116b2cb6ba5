"""The WSGI server's own limits on a real process: idle connections, bodies over the app's limits."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from barkserve.cli.serve import waitress_settings
from barkserve.config import ServerConfig
from serverproc import running_server

IDLE_CONNECTIONS = 150  # over waitress's default connection limit (100), under barkserve's (1000)
SMALL_LIMIT = 20


def test_waitress_limits_follow_the_settings() -> None:
    config = ServerConfig(max_body_bytes=2048, max_upload_bytes=10_000, max_connections=500, idle_timeout_sec=7)
    settings = waitress_settings(config)
    assert settings["max_request_body_size"] == 10_000 + 64 * 1024
    assert (settings["connection_limit"], settings["channel_timeout"]) == (500, 7)
    assert settings["asyncore_use_poll"] is True  # select() stops at 1024 descriptors


def half_open(host: str, port: int) -> socket.socket:
    """A connection that started a request and never finished its headers (slowloris)."""
    conn = socket.create_connection((host, port), timeout=60)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return conn


def test_idle_connections_do_not_lock_out_a_new_client(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle connections are never timed out during the test: only the connection limit lets the
    # new client in (waitress's own default limit, 100, would leave it waiting for an hour).
    monkeypatch.setenv("BARKSERVE_IDLE_TIMEOUT_SEC", "3600")
    with running_server(tiny_model_dir, tmp_path) as base:
        url = urlparse(base)
        idle = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                idle.append(half_open(url.hostname or "", url.port or 0))
            response = requests.get(f"{base}/health", timeout=60)
            assert response.status_code == 200 and response.json()["status"] == "ok"
        finally:
            for conn in idle:
                conn.close()


def test_at_max_connections_a_new_client_waits_for_a_free_one(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BARKSERVE_IDLE_TIMEOUT_SEC", "3600")
    monkeypatch.setenv("BARKSERVE_MAX_CONNECTIONS", str(SMALL_LIMIT))
    with running_server(tiny_model_dir, tmp_path) as base:
        url = urlparse(base)
        idle = [half_open(url.hostname or "", url.port or 0) for _ in range(SMALL_LIMIT)]
        answers: list[int] = []
        waiting = threading.Thread(
            target=lambda: answers.append(requests.get(f"{base}/health", timeout=120).status_code)
        )
        try:
            waiting.start()
            # With the limit applied the request cannot be served, however long it waits; without it
            # it is answered in milliseconds. (A slow machine could only make this pass, not fail.)
            waiting.join(timeout=3)
            assert waiting.is_alive() and answers == [], "a client got in past max_connections"
            for conn in idle:  # the connections free up (which one waitress takes next is its choice)
                conn.close()
            waiting.join(timeout=120)
            assert answers == [200]
        finally:
            for conn in idle:
                conn.close()
            waiting.join(timeout=120)


def test_an_idle_connection_is_closed_after_idle_timeout_sec(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BARKSERVE_IDLE_TIMEOUT_SEC", "2")
    with running_server(tiny_model_dir, tmp_path) as base:
        url = urlparse(base)
        with half_open(url.hostname or "", url.port or 0) as conn:
            # The server closes it (end of stream, no answer); waitress's default would keep it 120 s,
            # past this socket's 60 s guard.
            assert conn.recv(4096) == b""


def test_a_body_over_every_limit_is_refused_before_it_is_read(tiny_model_dir: Path, tmp_path: Path) -> None:
    with running_server(tiny_model_dir, tmp_path, "--threads", "2") as base:
        url = urlparse(base)
        with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
            # A gigabyte announced, none of it sent: the answer must come without reading a body.
            conn.sendall(
                b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000000\r\n\r\n"
            )
            head = conn.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 413"), head
        assert requests.get(f"{base}/health", timeout=30).status_code == 200


def test_json_access_log_lines_are_json_objects(tiny_model_dir: Path, tmp_path: Path) -> None:
    with running_server(tiny_model_dir, tmp_path, "--log-format", "json") as base:
        assert requests.get(f"{base}/health", timeout=30).status_code == 200
        assert requests.get(f"{base}/models", timeout=30).status_code == 200
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("{")]
    routes = [line["route"] for line in lines]
    assert "/models" in routes and all(line["status"] == 200 for line in lines if line["route"] == "/models")
