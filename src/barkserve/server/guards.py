"""Request guards: a web page the user visits must not be able to drive a local barkserve.

Every request's `Host` must name an allowed host (a page on a rebound DNS name, e.g.
`evil.example` resolving to 127.0.0.1, sends its own name), else a JSON 400 `invalid_host`.
A POST or DELETE that a browser sends for a page (`Origin`, or `Sec-Fetch-Site: cross-site`
without one) must come from an allowed host or the server's own origin, else a JSON 403
`cross_origin`. API clients (curl, the OpenAI client) send neither header and are unaffected.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask, request

from barkserve.config import ServerConfig
from barkserve.server.errors import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "::", "[::]", "")
# name[:port], where name is an IPv6 literal in brackets or has no ':', brackets, '/', '@' or space.
HOST = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]/@\s]+)(?::[0-9]{0,5})?")
# What browsers send as Origin: scheme://host[:port], without a path.
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://([^/?#]+)")


def host_name(host: str) -> str | None:
    """The lower-case name of a Host value without port or final dot ('[::1]:8000' -> '[::1]'); None if malformed."""
    match = HOST.fullmatch(host.strip().lower())
    name = match.group(1).rstrip(".") if match else ""
    return name or None


def setting_name(entry: str) -> str | None:
    """An `allowed_hosts` entry as `host_name` gives it; a bare IPv6 address gets its brackets."""
    try:
        return f"[{ipaddress.IPv6Address(entry.strip())}]"
    except ValueError:
        return host_name(entry)


def is_ip_literal(name: str) -> bool:
    """True for '10.0.0.2' and '[fe80::1]': names that DNS rebinding cannot use."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Which Host names and Origins the server accepts; built once from the settings."""

    names: frozenset[str]
    any_host: bool = False  # "*": a reverse proxy in front checks Host and Origin
    any_address: bool = False  # listening on every interface: any IP literal may be the Host

    @classmethod
    def from_config(cls, config: ServerConfig) -> HostPolicy:
        """The policy of `allowed_hosts`, or of localhost and the listening address when it is empty."""
        entries = config.allowed_hosts or (*LOCAL_NAMES, config.host)
        names = frozenset(n for n in map(setting_name, entries) if n and n != "*")
        any_host = any(entry.strip() == "*" for entry in entries)
        return cls(names, any_host=any_host, any_address=config.host.strip() in ANY_ADDRESS)

    def allows_host(self, host: str) -> bool:
        """Whether a request's Host header names this server."""
        name = host_name(host)
        if self.any_host or name is None:
            return self.any_host
        return name in self.names or (self.any_address and is_ip_literal(name))

    def allows_origin(self, origin: str, host: str) -> bool:
        """Whether a page at `origin` may change state: the server's own origin or an allowed host's."""
        if self.any_host:
            return True
        match = ORIGIN.fullmatch(origin.strip().lower())
        if match is None:  # "null" (sandboxed frames, file: pages) or garbage
            return False
        return match.group(1) == host.strip().lower() or host_name(match.group(1)) in self.names


def check_request(policy: HostPolicy) -> Any:
    """None to let the request through; a JSON 400 (Host) or 403 (Origin) answer to refuse it."""
    host = request.headers.get("Host")
    if host is not None and not policy.allows_host(host):
        return error_response(
            "invalid_host",
            f"this server does not answer to Host {host[:100]!r}; add the name to the allowed_hosts "
            "setting (BARKSERVE_ALLOWED_HOSTS, comma-separated)",
            400,
        )
    if request.method in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin is None:
        refused = request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site"
    else:
        refused = not policy.allows_origin(origin, host or "")
    if refused:
        return error_response(
            "cross_origin",
            f"{request.method} from a web page at {(origin or 'another site')[:100]!r} is refused: pages on "
            "other sites may not drive this server. Add its host to the allowed_hosts setting if you trust it",
            403,
        )
    return None


def init_app(app: Flask, config: ServerConfig) -> None:
    """Check the Host of every request and the Origin of every state-changing one before routing."""
    policy = HostPolicy.from_config(config)
    app.before_request(lambda: check_request(policy))
