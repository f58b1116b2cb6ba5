"""Shared fixtures: one tiny random Bark checkpoint per test session, with the real presets."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "bark-voices"


def _fixtures_dir() -> Path:
    # CI clones the repo with shared/ beside it; a checkout may also hold shared/ inside.
    for candidate in (FIXTURES, Path(__file__).resolve().parents[1] / "shared" / "fixtures" / "bark-voices"):
        if candidate.is_dir():
            return candidate
    pytest.skip("the real Bark voice fixtures (../shared/fixtures/bark-voices) are not present")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def voices_fixture_dir() -> Path:
    """The folder of Suno's real voice prompts (v2/<lang>_speaker_<n>.npz, announcer.npz)."""
    return _fixtures_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, voices_fixture_dir: Path) -> Path:
    """A tiny random Bark checkpoint saved to disk, loadable like suno/bark-small."""
    from barkserve.testing.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bark"), presets_from=voices_fixture_dir)
