"""What the WSGI server answers by itself, on a real `barkserve serve` process over raw sockets.

Every answer is JSON (also the ones waitress gives before the app sees a request), a refused upload
is answered (not reset), and a request framed both by Content-Length and Transfer-Encoding is refused
with its connection closed, so that nothing after its body runs as a second request.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from serverproc import running_server

HANG_GUARD_SEC = 60  # a socket read that never ends fails the test; not a speed assertion
MAX_BYTES = 4096  # max_body_bytes and max_upload_bytes of the server under test
LIMIT = MAX_BYTES + 64 * 1024  # waitress's body limit: the largest route's plus multipart framing
HEAD = b"Host: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root = tmp_path_factory.mktemp("protocol")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BARKSERVE_MAX_UPLOAD_BYTES", str(MAX_BYTES))
        env.setenv("BARKSERVE_MAX_BODY_BYTES", str(MAX_BYTES))
        with running_server(tiny_model_dir, root, "--threads", "2") as base:
            url = urlparse(base)
            yield str(url.hostname), int(url.port or 0)


def exchange(server: tuple[str, int], raw: bytes) -> bytes:
    """Send `raw` on a new connection; everything the server sends until it closes the connection."""
    with socket.create_connection(server, timeout=HANG_GUARD_SEC) as conn:
        conn.sendall(raw)
        received = b""
        while chunk := conn.recv(65536):  # b"": the server closed the connection
            received += chunk
    return received


def responses(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each HTTP response in `received`, in order (bodies by Content-Length)."""
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        found.append((status, headers, rest[:length]))
        received = rest[length:]
    return found


def the_one_json_error(received: bytes, status: int) -> dict[str, str]:
    """The single response on a connection the server closed: a JSON error with `status`."""
    answers = responses(received)
    assert [a[0] for a in answers] == [status], received[:600]
    _, headers, body = answers[0]
    assert headers["content-type"] == "application/json", received[:600]
    error: dict[str, str] = json.loads(body)["error"]
    assert error["code"] and error["message"]
    return error


BIG_HEADER = b"X-Big: " + b"a" * 300_000 + b"\r\n"
PROTOCOL_ERRORS = [
    ("headers over the limit", b"GET /health HTTP/1.1\r\n" + HEAD + BIG_HEADER + b"\r\n", 431, "headers"),
    ("body announced over the limit", b"POST /jobs HTTP/1.1\r\n" + HEAD + b"Content-Length: 999999999\r\n\r\n",
     413, "max_upload_bytes"),
    ("chunked body over the limit", b"POST /jobs HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
     + (b"8000\r\n" + b"x" * 0x8000 + b"\r\n") * (LIMIT // 0x8000 + 2) + b"0\r\n\r\n", 413, "max_body_bytes"),
    ("header line without a colon", b"GET /health HTTP/1.1\r\n" + HEAD + b"no colon here\r\n\r\n", 400, "malformed"),
    ("Content-Length not a number", b"POST /jobs HTTP/1.1\r\n" + HEAD + b"Content-Length: 12a\r\n\r\n",
     400, "Content-Length"),
    ("bare LF in the request line", b"GET /health\nX HTTP/1.1\r\n" + HEAD + b"\r\n", 400, "malformed"),
    ("chunk size not hex", b"POST /jobs HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
     400, "malformed"),
    ("unknown transfer coding", b"POST /jobs HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
     501, "chunked"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "status", "hint"), [p[1:] for p in PROTOCOL_ERRORS], ids=[p[0] for p in PROTOCOL_ERRORS]
)
def test_answers_waitress_gives_itself_are_json(server: tuple[str, int], raw: bytes, status: int, hint: str) -> None:
    error = the_one_json_error(exchange(server, raw), status)
    assert hint in error["message"], error


def test_content_length_and_transfer_encoding_together_are_refused_and_closed(server: tuple[str, int]) -> None:
    smuggled = b"GET /voices/smuggled HTTP/1.1\r\n" + HEAD + b"\r\n"
    raw = (
        b"POST /synthesize HTTP/1.1\r\n" + HEAD + b"Content-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + smuggled
    )
    error = the_one_json_error(exchange(server, raw), 400)  # one answer, then the connection is closed
    assert "Content-Length and Transfer-Encoding" in error["message"]
    # HTTP/1.0 frames by Content-Length in waitress, but the two together are refused there too.
    raw10 = raw.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1).replace(b"Host:", b"Connection: keep-alive\r\nHost:", 1)
    assert "Transfer-Encoding" in the_one_json_error(exchange(server, raw10), 400)["message"]
    # Either header alone still works, and keeps the connection open for the next request.
    chunked = b"POST /nothing-here HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    with socket.create_connection(server, timeout=HANG_GUARD_SEC) as conn:
        conn.sendall(chunked + b"GET /health HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n")
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    assert [a[0] for a in responses(received)] == [404, 200]


def test_an_upload_over_the_limit_is_always_answered_never_reset(server: tuple[str, int]) -> None:
    host, port = server
    body = b"\0" * (8 * 1024 * 1024)  # far over LIMIT: waitress refuses it from its headers alone
    head = b"POST /voices HTTP/1.1\r\n" + HEAD + b"Content-Type: multipart/form-data; boundary=x\r\n"
    for _ in range(5):
        # A client that sends its whole body before it reads: without draining, the close resets it.
        error = the_one_json_error(exchange(server, head + b"Content-Length: %d\r\n\r\n" % len(body) + body), 413)
        assert re.search(r"at most \d+ bytes", error["message"]), error
    response = requests.post(f"http://{host}:{port}/voices", data=body, timeout=HANG_GUARD_SEC,
                             headers={"Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert response.status_code == 413 and response.headers["Content-Type"] == "application/json"
    # Within waitress's limit but over the route's: the app's own JSON 413.
    text = "a" * (MAX_BYTES * 2)
    response = requests.post(f"http://{host}:{port}/synthesize", json={"text": text}, timeout=HANG_GUARD_SEC)
    assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]["message"]
