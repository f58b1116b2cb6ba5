"""Loading a scorer's model with `from_pretrained`: a hub id or a local folder, offline when asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from barkserve.errors import ScorerUnavailable

T = TypeVar("T")


def scorer_unavailable(role: str, source: str, reason: str) -> ScorerUnavailable:
    """A `ScorerUnavailable` that names the model and the ways out."""
    return ScorerUnavailable(
        f"{role} model {source!r} could not be loaded: {reason}. Ways out: connect to the internet once so the "
        f"Hugging Face cache (HF_HOME) holds it (then offline works); or pass a local folder saved with "
        f"save_pretrained; or, to run evaluation offline on random weights, build the tiny scorer checkpoints "
        f"with `barkserve make-tiny --with-scorers DIR` and use DIR/asr and DIR/speaker (their scores mean nothing)."
    )


def check_source(role: str, source: str) -> None:
    """A hub id (`owner/name`) or an existing folder; anything else fails before transformers is asked."""
    if Path(source).is_dir():
        return
    looks_like_path = source.startswith((".", "/", "~")) or Path(source).suffix or "\\" in source
    if source.count("/") != 1 or looks_like_path:
        raise scorer_unavailable(role, source, "it is neither a local folder nor a hub id like 'owner/name'")


def load(role: str, source: str, loader: Callable[..., T], offline: bool, **kwargs: Any) -> T:
    """`loader(source, local_files_only=offline, **kwargs)`, its failures turned into `ScorerUnavailable`."""
    check_source(role, source)
    try:
        return loader(source, local_files_only=offline, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise scorer_unavailable(role, source, first) from exc
