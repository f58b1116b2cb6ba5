"""Fixtures for the batched engine: the loaded tiny checkpoint, a reference engine, requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from barkserve.config import EngineConfig
from barkserve.engine.base import GenerationRequest
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.reference import ReferenceEngine
from barkserve.models import LoadedModel
from barkserve.options import SynthesisOptions
from barkserve.voices import VoicePrompt

MakeRequest = Callable[..., GenerationRequest]


@pytest.fixture(scope="session")
def loaded(tiny_loaded: LoadedModel) -> LoadedModel:
    """The session's tiny checkpoint (root conftest), under the name the engine tests use."""
    return tiny_loaded


@pytest.fixture(scope="session")
def reference(loaded: LoadedModel) -> ReferenceEngine:
    return ReferenceEngine(loaded)


@pytest.fixture
def engine(loaded: LoadedModel) -> Iterator[BatchedEngine]:
    with BatchedEngine(loaded, EngineConfig(max_batch_size=4, max_wait_ms=50)) as eng:
        yield eng


@pytest.fixture(scope="session")
def voice(voices_fixture_dir: Path) -> Callable[[str], VoicePrompt]:
    def load(name: str) -> VoicePrompt:
        return VoicePrompt.from_npz(voices_fixture_dir / f"{name}.npz", name=name)

    return load


@pytest.fixture(scope="session")
def make_request(reference: ReferenceEngine) -> MakeRequest:
    """A request for `text` capped at `sec` seconds; greedy unless temperatures are given."""

    def make(
        text: str, voice: VoicePrompt | None, sec: float, seed: int = 1, temp: float = 0.0, **options: object
    ) -> GenerationRequest:
        opts = SynthesisOptions(
            text_temp=temp,
            waveform_temp=temp,
            seed=seed,
            max_duration_sec=sec,
            **options,  # type: ignore[arg-type]
        )
        return GenerationRequest(reference.tokenize(text), voice, opts)

    return make


@pytest.fixture(scope="session")
def assert_matches_reference(reference: ReferenceEngine) -> Callable[..., None]:
    """Submit `requests` together to `engine`; each row's tokens must equal the reference's alone."""
    from barkserve.testing.check import reference_tokens, task_tokens

    def check(engine: BatchedEngine, requests: list[GenerationRequest]) -> None:
        jobs = [engine.submit(r) for r in requests]
        for job in jobs:
            job.wait()
        for request, job in zip(requests, jobs, strict=True):
            assert task_tokens(job).same_tokens(reference_tokens(reference, request))

    return check
