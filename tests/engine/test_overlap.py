"""The fine stage and codec off the decode loop (engine/finisher.py), and rows sized from free memory.

The races are made deterministic: the fine stage is held on a `threading.Event` that the decode loop
itself sets after it has taken a number of steps, so "decode went on while fine ran" is a count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from barkserve.config import EngineConfig
from barkserve.engine.batched import BatchedEngine, batch_rows, row_bytes, rows_that_fit
from barkserve.engine.inputs import BarkGeometry
from barkserve.engine.stages.coarse import coarse_cache_length
from barkserve.errors import ConfigError, GenerationCancelled
from barkserve.testing.check import reference_tokens, task_tokens

STEPS = 5  # decode steps the loop must take while the fine stage is held
HANG_GUARD_S = 120  # only reached when the feature is broken: the test then fails instead of hanging


class HeldFine:
    """Wraps the pipeline's fine + codec call: the first batch it sees on the worker thread waits
    for `go`; records each batch's size and thread, and what happened while the first was held."""

    def __init__(self, engine: BatchedEngine, on_hold: Callable[[], None] = lambda: None) -> None:
        self.engine, self.on_hold = engine, on_hold
        self.real = engine.pipeline._fine_and_codec
        self.go, self.entered = threading.Event(), threading.Event()
        self.held = False
        self.batches: list[int] = []
        self.threads: list[str] = []
        self.steps_while_held = 0
        engine.pipeline._fine_and_codec = self  # type: ignore[method-assign]

    def __call__(self, tasks: list[Any]) -> None:
        self.batches.append(len(tasks))
        self.threads.append(threading.current_thread().name)
        on_worker = threading.current_thread() is not self.engine.scheduler._thread
        if len(self.batches) == 1 and on_worker:
            self.held = True
            self.on_hold()
            self.entered.set()
            self.go.wait(HANG_GUARD_S)
            self.held = False
        self.real(tasks)

    def count_steps(self, stage: Any, release_after: int | None = STEPS) -> None:
        """Count `stage.step` calls made while the fine stage is held; set `go` after `release_after`."""
        step = stage.step

        def spy() -> Any:
            if self.held:
                self.steps_while_held += 1
                if release_after is not None and self.steps_while_held >= release_after:
                    self.go.set()
            return step()

        stage.step = spy


def test_decode_steps_go_on_while_the_fine_stage_runs(engine, reference, make_request, voice):
    first = make_request("Done early.", voice("v2/en_speaker_1"), 0.3)
    late = make_request("Arrives while the first is in the fine stage.", voice("v2/en_speaker_2"), 1.0)
    jobs: list = []
    held = HeldFine(engine, on_hold=lambda: jobs.append(engine.submit(late)))
    held.count_steps(engine.pipeline.semantic)
    with engine.scheduler._cond:  # the engine thread takes the first request once it is in `jobs`
        jobs.insert(0, engine.submit(first))
    for job in jobs:
        job.wait()
    # The late request was admitted and decoded while the first one's fine stage was still running.
    assert held.steps_while_held >= STEPS
    assert held.threads[0] == "barkserve-fine"
    for request, job in zip([first, late], jobs, strict=True):
        assert task_tokens(job).same_tokens(reference_tokens(reference, request))


def test_tasks_finishing_while_the_worker_is_busy_form_its_next_batch(engine, reference, make_request, voice):
    requests = [
        make_request("First.", voice("v2/en_speaker_3"), 0.3),
        make_request("Second one.", voice("v2/en_speaker_4"), 0.6),
        make_request("The third one.", None, 0.9),
    ]
    held = HeldFine(engine)
    handed: list[int] = []
    put = engine.pipeline.finisher.put

    def spy(tasks):
        handed.append(len(tasks))
        put(tasks)
        if len(handed) == 3:  # the second and third finished coarse while the first was held
            held.go.set()

    engine.pipeline.finisher.put = spy
    with engine.scheduler._cond:  # admitted together
        jobs = [engine.submit(r) for r in requests]
    for job in jobs:
        job.wait()
    assert handed == [1, 1, 1]  # they finished coarse at three different steps
    assert held.batches == [1, 2]  # ... and the two that came while the worker was busy ran as one batch
    for request, job in zip(requests, jobs, strict=True):
        assert task_tokens(job).same_tokens(reference_tokens(reference, request))


def test_a_task_cancelled_while_queued_for_the_fine_stage_fails_alone(engine, reference, make_request, voice):
    requests = [make_request("Kept.", voice("v2/en_speaker_5"), 0.3), make_request("Dropped later.", None, 0.6)]
    held = HeldFine(engine)
    put = engine.pipeline.finisher.put
    jobs: list = []

    def spy(tasks):
        put(tasks)
        if jobs[1] in tasks:  # queued behind the held batch: cancel it, then let the worker go on
            jobs[1].cancel()
            held.go.set()

    engine.pipeline.finisher.put = spy
    with engine.scheduler._cond:
        jobs.extend(engine.submit(r) for r in requests)
    with pytest.raises(GenerationCancelled):
        jobs[1].wait()
    jobs[0].wait()
    assert held.batches == [1]  # the cancelled task never reached the fine stage
    assert task_tokens(jobs[0]).same_tokens(reference_tokens(reference, requests[0]))


def test_a_failing_fine_batch_on_the_worker_fails_its_tasks_and_decode_goes_on(engine, make_request, voice):
    requests = [make_request("Fails.", voice("v2/en_speaker_6"), 0.3), make_request("Survives.", None, 1.0)]
    real = engine.pipeline._fine_and_codec
    threads: list[str] = []

    def fail_first(tasks):
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            raise RuntimeError("fine stage broke")
        return real(tasks)

    engine.pipeline._fine_and_codec = fail_first
    with engine.scheduler._cond:
        jobs = [engine.submit(r) for r in requests]
    with pytest.raises(RuntimeError, match="fine stage broke"):
        jobs[0].wait()
    assert jobs[1].wait().audio.size > 0
    assert threads == ["barkserve-fine", "barkserve-fine"]
    assert engine.pipeline.finisher._thread.is_alive()  # the worker keeps serving


def test_close_lets_the_fine_worker_finish_and_stops_every_thread(loaded, make_request):
    engine = BatchedEngine(loaded, EngineConfig(max_batch_size=2, max_wait_ms=0))
    held = HeldFine(engine)
    job = engine.submit(make_request("Closing soon.", None, 0.3))
    assert held.entered.wait(HANG_GUARD_S)
    closer = threading.Thread(target=engine.close)
    closer.start()
    held.go.set()
    closer.join()
    assert job.finished and job.error is None and job.result is not None  # finished before close returned
    assert not engine.scheduler._thread.is_alive()
    assert not engine.pipeline.finisher._thread.is_alive()
    with pytest.raises(GenerationCancelled):  # EngineClosed is one
        engine.submit(make_request("Too late.", None, 0.3))


def test_with_overlap_off_the_fine_stage_runs_inside_the_decode_loop(loaded, reference, make_request, voice):
    requests = [make_request("Serial.", voice("v2/en_speaker_7"), 0.3), make_request("Loop.", None, 0.8)]
    config = EngineConfig(max_batch_size=4, max_wait_ms=50, overlap_fine=False)
    with BatchedEngine(loaded, config) as engine:
        assert engine.pipeline.finisher is None
        held = HeldFine(engine)  # never holds: nothing runs off the engine thread
        held.count_steps(engine.pipeline.coarse, release_after=None)
        with engine.scheduler._cond:
            jobs = [engine.submit(r) for r in requests]
        for job in jobs:
            job.wait()
    assert held.threads == ["barkserve-engine", "barkserve-engine"] and held.steps_while_held == 0
    for request, job in zip(requests, jobs, strict=True):
        assert task_tokens(job).same_tokens(reference_tokens(reference, request))


# Rows sized from the device's free memory (`auto_batch`).

MIB = 2**20


def test_rows_that_fit_take_the_usable_share_of_free_memory_up_to_the_ceiling():
    assert rows_that_fit(1000 * MIB, 100 * MIB, ceiling=128, share=0.9) == 9
    assert rows_that_fit(100_000 * MIB, 100 * MIB, ceiling=64, share=0.9) == 64
    assert rows_that_fit(112 * MIB, 100 * MIB, ceiling=8, share=0.9) == 1


def test_rows_that_fit_refuses_when_not_even_one_row_fits():
    with pytest.raises(ConfigError, match=r"one row of the engine needs 100 MiB .* only 105 MiB are free"):
        rows_that_fit(105 * MIB, 100 * MIB, ceiling=8, share=0.9)


def bark_small_like(geo: BarkGeometry) -> SimpleNamespace:
    """bark-small's causal shapes (12 layers, 768 wide, 1024 positions) with the given geometry."""
    cfg = SimpleNamespace(num_layers=12, hidden_size=768, block_size=1024)
    return SimpleNamespace(semantic=SimpleNamespace(config=cfg), coarse_acoustics=SimpleNamespace(config=cfg))


def test_a_row_costs_its_semantic_and_coarse_caches_twice(loaded):
    geo = BarkGeometry.from_model(loaded.model)
    model = bark_small_like(geo)
    coarse_len = coarse_cache_length(model.coarse_acoustics.config, geo)
    kv = 2 * 12 * 768 * (1024 + coarse_len) * 2  # keys and values, bf16
    assert row_bytes(model, geo, torch.bfloat16) == 2 * kv
    assert row_bytes(model, geo, torch.float32) == 4 * kv


def test_auto_batch_sizes_rows_from_cuda_free_memory(loaded, monkeypatch):
    geo = BarkGeometry.from_model(loaded.model)
    model = bark_small_like(geo)
    per_row = row_bytes(model, geo, torch.bfloat16)
    free = {"bytes": 70 * 2**30}  # an H100 with bark-small loaded
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
    auto = EngineConfig(max_batch_size=128, auto_batch=True)
    assert batch_rows(auto, model, geo, "cuda", torch.bfloat16) == min(128, int(free["bytes"] * 0.9) // per_row)
    assert batch_rows(auto, model, geo, "cuda", torch.bfloat16) >= 64
    free["bytes"] = 3 * per_row  # a crowded card: what fits
    assert batch_rows(auto, model, geo, "cuda:0", torch.bfloat16) == 2
    free["bytes"] = per_row // 2
    with pytest.raises(ConfigError, match="auto_batch"):
        batch_rows(auto, model, geo, "cuda", torch.bfloat16)
    # Off, or on a CPU: the rows as set.
    assert batch_rows(EngineConfig(max_batch_size=128), model, geo, "cuda", torch.bfloat16) == 128
    assert batch_rows(auto, model, geo, "cpu", torch.float32) == 128


def test_the_engine_uses_the_sized_rows(loaded, monkeypatch):
    import barkserve.engine.batched as batched

    monkeypatch.setattr(batched, "batch_rows", lambda *args: 3)
    with BatchedEngine(loaded, EngineConfig(max_batch_size=64, auto_batch=True)) as engine:
        assert engine.max_batch == 3
        assert engine.pipeline.semantic.cache.max_rows == engine.pipeline.coarse.cache.max_rows == 3


def test_bench_engine_compares_overlap_on_and_off_on_the_tiny_checkpoint(
    tiny_model_dir, voices_fixture_dir, capsys: pytest.CaptureFixture[str]
):
    # Smoke mode of `bench_engine.py --overlap`: both modes run the same requests and agree on the tokens.
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_engine.py"
    spec = importlib.util.spec_from_file_location("bench_engine_overlap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = [
        "--overlap",
        "--quick",
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--voices",
        str(voices_fixture_dir),
    ]
    assert module.main(argv) == 0  # 1: the two modes made different tokens
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tokens_equal"] is True and len(result["lengths_sec"]) == 4
    for mode in ("overlap", "serial"):
        row = result[mode]
        assert row["decode_steps"] > 0 and row["late_audio_sec"] > 0 and row["late_request_sec"] > 0
        assert row["audio_per_sec"] > 0 and row["gap_ms_max"] >= 0
