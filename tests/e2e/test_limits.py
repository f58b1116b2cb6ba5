"""The WSGI server's own limits on a real process: idle connections, bodies over the app's limits."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import requests

from barkserve.cli.serve import waitress_settings
from barkserve.config import ServerConfig
from serverproc import running_server

IDLE_CONNECTIONS = 150


def test_waitress_limits_follow_the_settings() -> None:
    config = ServerConfig(max_body_bytes=2048, max_upload_bytes=10_000, max_connections=500, idle_timeout_sec=7)
    settings = waitress_settings(config)
    assert settings["max_request_body_size"] == 10_000 + 64 * 1024
    assert (settings["connection_limit"], settings["channel_timeout"]) == (500, 7)
    assert settings["asyncore_use_poll"] is True  # select() stops at 1024 descriptors


def test_idle_connections_do_not_lock_out_a_new_client(tiny_model_dir: Path, tmp_path: Path) -> None:
    with running_server(tiny_model_dir, tmp_path) as base:
        url = urlparse(base)
        idle = []
        try:
            for _ in range(IDLE_CONNECTIONS):  # slowloris: headers started, never finished
                conn = socket.create_connection((url.hostname, url.port), timeout=10)
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                idle.append(conn)
            response = requests.get(f"{base}/health", timeout=60)
            assert response.status_code == 200 and response.json()["status"] == "ok"
        finally:
            for conn in idle:
                conn.close()


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
