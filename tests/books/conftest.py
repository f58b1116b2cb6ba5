"""Fixtures of the book tests: the corpus books that producers make in the test run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from corpus_builds import RECIPES, build, missing


def unavailable(what: str) -> None:
    """Skip for something not installed; under CI=true fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing: .ci/system-deps.sh installs the corpus packages and producers")
    pytest.skip(f"{what} is not installed (run .ci/system-deps.sh)")


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`built_book("built/<producer>/<file>")`: a corpus file a producer makes, made once per session."""
    made: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in made:
            lacking = missing(RECIPES[key])
            if lacking:
                unavailable(", ".join(lacking))
            made[key] = build(key, tmp_path_factory.mktemp("corpus"))
        return made[key]

    return get
