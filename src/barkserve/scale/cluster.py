"""Joining a Ray cluster: a clear error when Ray is missing or the address answers nothing."""

from __future__ import annotations

import logging
import socket
from typing import Any

from barkserve.errors import RayUnavailable

INSTALL_HINT = "pip install 'barkserve[ray]'"
# How long a cluster address may take to accept a TCP connection before it counts as unreachable.
CONNECT_TIMEOUT_SEC = 5.0
# `--ray` given without an address: Ray's own default (RAY_ADDRESS, else a cluster started on this
# machine with `ray start --head`, else a new local one inside this process).
DEFAULT_ADDRESS = ""


def require_ray() -> Any:
    """The `ray` module, or `RayUnavailable` saying how to install the extra."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"--ray needs Ray, which is not installed; install the extra: {INSTALL_HINT}") from exc
    return ray


def host_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint of a cluster address (`HOST:PORT` or `ray://HOST:PORT`); None for `auto`/`local`/''."""
    bare = address.removeprefix("ray://").strip()
    if bare in ("", "auto", "local"):
        return None
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RayUnavailable(
            f"a Ray address looks like HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379), ray://HOST:10001 "
            f"(Ray Client), 'auto' or 'local'; got {address!r}"
        )
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SEC) -> None:
    """Fail fast with `RayUnavailable` when nothing listens at `address` (ray.init would retry for long)."""
    endpoint = host_port(address)
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise RayUnavailable(
            f"no Ray cluster answers at {address} ({reason}). Start one with `ray start --head` on that "
            f"machine, or leave out the address to start a local cluster"
        ) from exc


def connect(address: str | None = DEFAULT_ADDRESS, num_cpus: int | None = None) -> Any:
    """Join the cluster at `address` (or start a local one), unless this process already joined one.

    Args:
        address: `HOST:PORT`, `ray://HOST:PORT`, `auto`, `local` (a new cluster in this process) or
            '' / None (Ray's default).
        num_cpus: CPUs of a new local cluster; ignored when joining an existing one.

    Returns:
        The `ray` module, initialized.

    Raises:
        RayUnavailable: Ray is not installed, the address is malformed, or nothing answers there.
    """
    ray = require_ray()
    address = (address or "").strip()
    check_reachable(address)
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address == "local" or not address:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=None if address in ("", "local") else address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise RayUnavailable(f"could not join the Ray cluster at {address or 'the default address'}: {exc}") from exc
    return ray
