"""The WSGI server: waitress, with JSON for the answers it gives itself and a few rules of its own.

waitress answers some requests before the app sees them: headers or a body over its limits (431,
413), a malformed request (400), a transfer coding it does not know (501). Here those answers are
JSON like every other (`{"error": {"code", "message"}}`), and three rules are added:

- A request with both Content-Length and Transfer-Encoding is refused (400) and its connection
  closed (RFC 9112 section 6.1): framed by one header, its body could hide a second request for a
  proxy that framed it by the other (request smuggling).
- After such an answer the server half-closes and reads, and drops, what the client still sends (up
  to DRAIN_BYTES) before it closes: a client still uploading a refused body reads the answer instead
  of a connection reset (the "lingering close" of Apache and nginx).
- GET /health and /metrics, and the protocol errors, run on threads of their own: a server whose
  every worker thread is busy synthesizing still answers its load balancer at once.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import BadRequest, Error, RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from barkserve.server.errors import error_body

# What a refused client may still send and have dropped, so that it reads the answer.
DRAIN_BYTES = 64 * 1024 * 1024
# Routes that never synthesize and must answer while synthesis holds every worker thread.
LIGHT_PATHS = frozenset({"/health", "/metrics"})
LIGHT_THREADS = 2
FRAMING_MESSAGE = (
    "a request may not carry both Content-Length and Transfer-Encoding (RFC 9112 section 6.1); "
    "send one of them. The connection is closed"
)


class StrictParser(HTTPRequestParser):
    """waitress's parser, refusing a request framed twice and reading nothing after a refused one."""

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # waitress removes Transfer-Encoding from HTTP/1.1 headers once it set `chunked`.
        transfer_encoded = self.chunked or "TRANSFER_ENCODING" in self.headers
        if transfer_encoded and "CONTENT_LENGTH" in self.headers:
            raise ParsingError(FRAMING_MESSAGE)

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.error is not None:
            self.expect_continue = False  # no "100 Continue" for a refused request
            return len(data)  # what came with it is drained, never parsed as another request
        return consumed


class JsonErrorTask(ErrorTask):
    """waitress's own error answers as the app's JSON errors; the connection closes after them."""

    def execute(self) -> None:
        error: Error = self.request.error
        code = error.reason.lower().replace(" ", "_")
        body = json.dumps(error_body(code, message_of(error, self.channel.adj), error.code)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.channel.drain_after_answer = True
        self.content_length = len(body)
        self.write(body)


def message_of(error: Error, adj: Any) -> str:
    """What was wrong with a request that waitress refused, and how to fix it."""
    if isinstance(error, RequestEntityTooLarge):
        return (
            f"request body too large: this server takes at most {adj.max_request_body_size} bytes on any route; "
            f"see the max_body_bytes and max_upload_bytes settings"
        )
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return f"the request line and headers are over {adj.max_request_header_size} bytes; send fewer or shorter ones"
    if isinstance(error, BadRequest):
        text = str(error.body)
        return text if text == FRAMING_MESSAGE else f"malformed HTTP request: {text}"
    if error.code == 501:
        return f"{error.body} Send the body as it is (with Content-Length) or with Transfer-Encoding: chunked"
    return "internal server error; see the server log"


class Channel(HTTPChannel):
    """A connection: waitress's, with the strict parser, JSON errors and draining after an error."""

    parser_class = StrictParser
    error_task_class = JsonErrorTask
    drain_after_answer = False  # set by an error answer: half-close, then drain, then close
    draining = False
    drained = 0

    def received(self, data: bytes) -> bool:
        with self.requests_lock:
            refused = any(r.error is not None for r in self.requests)
        if not (self.draining or refused):
            return bool(super().received(data))
        self.drained += len(data)
        if self.drained > DRAIN_BYTES:
            self.will_close = True  # enough: close even if the client goes on sending
        return True

    def handle_close(self) -> None:
        """After an error answer is sent: half-close and keep reading until the client closes."""
        if self.drain_after_answer and not self.draining and self.connected and not self.total_outbufs_len:
            self.draining, self.will_close = True, False
            try:
                self.socket.shutdown(socket.SHUT_WR)  # the client reads the answer, then the end of it
                return
            except OSError:
                pass
        super().handle_close()


class RoutingDispatcher:
    """Two pools of worker threads: health, metrics and protocol errors never wait behind synthesis."""

    def __init__(self, threads: int, light_threads: int = LIGHT_THREADS) -> None:
        self.main = ThreadedTaskDispatcher()
        self.main.set_thread_count(threads)
        self.light = ThreadedTaskDispatcher()
        self.light.set_thread_count(light_threads)

    def add_task(self, channel: Channel) -> None:
        """Queue a connection's next request (waitress calls this with the channel's requests locked)."""
        request = channel.requests[0]
        light = request.error is not None or (request.command in ("GET", "HEAD") and request.path in LIGHT_PATHS)
        (self.light if light else self.main).add_task(channel)

    def set_thread_count(self, count: int) -> None:
        self.main.set_thread_count(count)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        main = self.main.shutdown(cancel_pending, timeout)
        light = self.light.shutdown(cancel_pending, timeout)
        return bool(main and light)


def make_server(app: Any, settings: dict[str, Any]) -> Any:
    """A waitress server for `app` with barkserve's channel and dispatcher; `.run()` serves until closed."""
    sockets: dict[int, Any] = {}
    server = create_server(app, map=sockets, _dispatcher=RoutingDispatcher(settings["threads"]), **settings)
    for listener in list(sockets.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = Channel
    return server
