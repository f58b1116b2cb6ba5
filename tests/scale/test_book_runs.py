"""`book --ray`'s plan of what may run at once: every chunk alone with a fixed voice, a segment's pending
chunks in order (from the voice its finished ones carried) with carried history or quality control."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from barkserve.options import SynthesisOptions
from barkserve.scale.book import plan_runs


class Segment:
    """A SynthesisPlan's part that `plan_runs` reads (hashed by identity, like a plan)."""

    def __init__(self, name: str, chunks: int, **options: Any) -> None:
        self.info = SimpleNamespace(options=SynthesisOptions.from_dict(options), sample_rate=24_000)
        self.voice, self.chunks = f"{name}-voice", chunks


def job(plans: list[Any], done: set[int]) -> tuple[list[Any], list[Any]]:
    units = [(plan, i) for plan in plans for i in range(plan.chunks)]
    rows = [
        SimpleNamespace(index=k, done=k in done, path=f"chunk_{k}" if k in done else None) for k in range(len(units))
    ]
    return units, rows


class Files:
    """A job's checkpoints as `plan_runs` reads them: the history each finished chunk saved."""

    def history(self, index: int, voice: str, sample_rate: int) -> str:
        return f"{voice}+chunk_{index}"


files: Any = Files()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, [(0, (1,), "a-voice"), (0, (2,), "a-voice"), (1, (0,), "b-voice"), (1, (1,), "b-voice")]),
        ({"carry_history": True}, [(0, (1, 2), "a-voice+chunk_0"), (1, (0, 1), "b-voice")]),
    ],
)
def test_runs_of_a_resumed_job(options: dict[str, Any], expected: list[tuple[int, tuple[int, ...], str]]) -> None:
    units, rows = job([Segment("a", 3, **options), Segment("b", 2, **options)], done={0})
    assert [(r.segment, r.chunks, r.voice) for r in plan_runs(units, rows, files)] == expected


def test_a_segment_in_order_with_a_gap_is_left_to_the_runner() -> None:
    # Chunk 1 finished but chunk 0 did not (not something the runner leaves): its voice after chunk 0 is
    # unknown here, so segment a is not sent; b still is.
    units, rows = job([Segment("a", 3, carry_history=True), Segment("b", 1, carry_history=True)], done={1})
    assert [(r.segment, r.chunks) for r in plan_runs(units, rows, files)] == [(1, (0,))]
