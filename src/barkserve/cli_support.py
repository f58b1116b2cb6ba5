"""Pieces shared by the command-line modules."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from barkserve.errors import BarkServeError


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become a one-line message and exit code 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BarkServeError as exc:
            raise click.ClickException(exc.message) from exc

    return wrapper
