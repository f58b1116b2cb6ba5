"""Continuous batching: per-request seeds, joining a running batch, cancellation, failures."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from barkserve.config import EngineConfig
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.stages import coarse as coarse_module
from barkserve.errors import ConfigError, GenerationCancelled, InvalidRequest
from barkserve.testing.check import task_tokens


def run_alone(engine, request):
    job = engine.submit(request)
    job.wait()
    return task_tokens(job)


def record_semantic_rows(engine) -> list[int]:
    """Make the engine's semantic stage record how many rows each of its steps ran."""
    rows: list[int] = []
    step = engine.pipeline.semantic.step

    def spy():
        rows.append(engine.pipeline.semantic.cache.n)
        return step()

    engine.pipeline.semantic.step = spy
    return rows


def sampled_requests(make_request, voice):
    names = ["v2/en_speaker_0", "v2/de_speaker_1", "v2/it_speaker_2", None]
    return [
        make_request(f"Sample number {i}.", voice(n) if n else None, 0.5 + 0.3 * i, seed=100 + i, temp=0.8)
        for i, n in enumerate(names)
    ]


def test_sampled_output_is_the_same_alone_and_in_a_batch(engine, make_request, voice):
    requests = sampled_requests(make_request, voice)
    alone = [run_alone(engine, r) for r in requests]
    jobs = [engine.submit(r) for r in requests]
    for job, expected in zip(jobs, alone, strict=True):
        job.wait()
        got = task_tokens(job)
        assert got.same_tokens(expected)
        np.testing.assert_array_equal(got.audio, expected.audio)


def test_the_seed_decides_the_sampled_tokens(engine, make_request):
    first = run_alone(engine, make_request("Same text.", None, 0.6, seed=1, temp=0.8))
    again = run_alone(engine, make_request("Same text.", None, 0.6, seed=1, temp=0.8))
    other = run_alone(engine, make_request("Same text.", None, 0.6, seed=2, temp=0.8))
    assert first.same_tokens(again)
    assert not np.array_equal(first.semantic, other.semantic)


def test_concurrent_generate_calls_share_batches_and_match_alone(engine, make_request, voice):
    requests = sampled_requests(make_request, voice)
    alone = [run_alone(engine, r) for r in requests]
    results: list = [None] * len(requests)
    batch_sizes = record_semantic_rows(engine)

    def call(i):
        results[i] = engine.generate(requests[i]).audio

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(batch_sizes) > 1  # the threads' requests ran in one batch
    for got, expected in zip(results, alone, strict=True):
        np.testing.assert_array_equal(got, expected.audio)


def test_a_request_joins_while_another_is_in_the_coarse_stage(engine, make_request, voice):
    long = make_request("A long one, that takes a while.", voice("v2/en_speaker_3"), 2.5)
    short = make_request("Quick.", voice("v2/en_speaker_4"), 0.4)
    expected_short = run_alone(engine, short)
    overlap = []
    coarse_step = engine.pipeline.coarse.step
    late: list = []

    def spy():
        if not late:  # the long request is in the coarse stage: send the short one now
            late.append(engine.submit(short))
        overlap.append(bool(engine.pipeline.semantic.rows) and bool(engine.pipeline.coarse.rows))
        return coarse_step()

    engine.pipeline.coarse.step = spy
    first = engine.submit(long)
    first.wait()
    assert any(overlap)  # semantic of one request ran alongside coarse of the other
    assert late[0].finished and late[0].result is not None
    assert task_tokens(late[0]).same_tokens(expected_short)


def test_cancelling_a_request_leaves_the_others_untouched(engine, make_request, voice):
    requests = sampled_requests(make_request, voice)[:3]
    alone = [run_alone(engine, r) for r in requests]
    jobs: list = []
    step = engine.pipeline.coarse.step

    def cancel_mid_coarse():
        if engine.pipeline.coarse.rows and not jobs[1].cancelled:
            jobs[1].cancel()
        return step()

    engine.pipeline.coarse.step = cancel_mid_coarse
    jobs.extend(engine.submit(r) for r in requests)
    with pytest.raises(GenerationCancelled):
        jobs[1].wait()
    for i in (0, 2):
        jobs[i].wait()
        assert task_tokens(jobs[i]).same_tokens(alone[i])


def test_a_failing_request_fails_alone(engine, make_request, voice, monkeypatch):
    requests = sampled_requests(make_request, voice)[:3]
    alone = [run_alone(engine, r) for r in requests]
    real_new_row = coarse_module.new_row

    def broken_for_the_second(geo, job):
        if job.request is requests[1]:
            raise RuntimeError("broken voice")
        return real_new_row(geo, job)

    monkeypatch.setattr(coarse_module, "new_row", broken_for_the_second)
    jobs = [engine.submit(r) for r in requests]
    with pytest.raises(RuntimeError, match="broken voice"):
        jobs[1].wait()
    for i in (0, 2):
        jobs[i].wait()
        assert task_tokens(jobs[i]).same_tokens(alone[i])


def test_a_failing_stage_fails_its_batch_and_the_engine_keeps_serving(engine, make_request, voice):
    requests = sampled_requests(make_request, voice)[:2]
    expected = run_alone(engine, requests[0])
    real = engine.pipeline._fine_and_codec
    calls: list = []

    def fail_once(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return real(jobs)

    engine.pipeline._fine_and_codec = fail_once
    failing = engine.submit(requests[1])
    with pytest.raises(RuntimeError, match="device lost"):
        failing.wait()
    job = engine.submit(requests[0])
    job.wait()
    assert task_tokens(job).same_tokens(expected)


def test_a_timed_out_request_is_cancelled(loaded, make_request):
    engine = BatchedEngine(loaded, EngineConfig(request_timeout_s=1e-6))
    with engine, pytest.raises(GenerationCancelled):
        engine.generate(make_request("Too slow for a microsecond.", None, 1.0))


@pytest.mark.parametrize(
    "text_ids",
    [np.zeros((2, 3), dtype=np.int64), np.array([1.5, 2.0]), np.array([-1]), np.zeros(257, dtype=np.int64)],
)
def test_bad_text_ids_are_refused_before_they_reach_a_batch(engine, make_request, text_ids):
    from dataclasses import replace

    with pytest.raises(InvalidRequest):
        engine.submit(replace(make_request("x", None, 0.5), text_ids=text_ids))


@pytest.mark.parametrize(
    "settings",
    [{"max_batch_size": 0}, {"max_batch_size": True}, {"max_wait_ms": -1}, {"quantize": "int4"},
     {"request_timeout_s": 0}, {"batch": 4}, {"overlap_fine": "no"}, {"auto_batch": 1}],
)  # fmt: skip
def test_bad_engine_settings_are_refused(settings):
    with pytest.raises(ConfigError):
        EngineConfig.from_dict(settings)


def test_closed_engine_refuses_new_work(loaded, make_request):
    engine = BatchedEngine(loaded)
    engine.close()
    with pytest.raises(GenerationCancelled):
        engine.submit(make_request("Late.", None, 0.5))


def test_int8_engine_quantizes_a_copy_and_still_speaks(loaded, make_request, voice):
    import torch

    request = make_request("Quantized speech.", voice("v2/en_speaker_5"), 0.8)
    with BatchedEngine(loaded, EngineConfig(quantize="int8")) as engine:
        job = engine.submit(request)
        audio = job.wait().audio
        quantized = engine.pipeline.semantic.model.layers[0].attn.att_proj
    assert "quantized" in type(quantized).__module__
    # The loaded model other engines share keeps its float weights.
    assert isinstance(loaded.model.semantic.layers[0].attn.att_proj, torch.nn.Linear)
    # Greedy lengths follow the semantic cap; the codec makes 320 samples per frame.
    assert len(job.semantic) == request.options.max_semantic_tokens
    assert job.fine is not None and audio.shape == (job.fine.shape[1] * 320,)


def test_identical_requests_batched_together_give_the_audio_of_one_alone(loaded, make_request, voice):
    # The README promises the same audio for the same seed, whatever else is in the batch.
    request = make_request("The same words, six times at once.", voice("v2/en_speaker_1"), 0.6, seed=3, temp=0.7)
    with BatchedEngine(loaded, EngineConfig(max_batch_size=8, max_wait_ms=200)) as engine:
        alone = run_alone(engine, request)
        rows = record_semantic_rows(engine)
        tasks = [engine.submit(request) for _ in range(6)]
        for task in tasks:
            task.wait()
    assert max(rows) == 6  # they really ran as one batch
    for task in tasks:
        got = task_tokens(task)
        assert got.same_tokens(alone)
        np.testing.assert_array_equal(got.audio, alone.audio)


def test_first_audio_is_admitted_before_older_queued_work(loaded, make_request):
    engine = BatchedEngine(loaded, EngineConfig(max_batch_size=2))
    scheduler = engine.scheduler
    scheduler._thread = threading.current_thread()  # no engine thread: the queue is inspected by hand
    older = [engine.submit(make_request(f"Queued {i}.", None, 0.3, seed=i)) for i in range(3)]
    urgent = engine.submit(replace(make_request("First words.", None, 0.3, seed=9), first_audio=True))
    with scheduler._cond:
        admitted = scheduler._admit(2)
    assert admitted == [urgent, older[0]]  # then oldest first
    with scheduler._cond:
        assert scheduler._admit(5) == older[1:]


def test_a_caller_woken_by_one_task_of_a_batch_sees_every_task_of_that_batch_finished(
    engine, make_request, voice, monkeypatch
):
    # Quality control hands a request's chunks made together to the scorer together: it waits for one
    # and takes every chunk that is finished by then, so a batch must settle all of its tasks first.
    from barkserve.engine.task import GenerationTask

    seen: list[list[bool]] = []
    release = GenerationTask.release
    jobs: list = []

    def spy(task):
        seen.append([job.finished for job in jobs])  # what a caller woken now would see
        release(task)

    monkeypatch.setattr(GenerationTask, "release", spy)
    requests = [make_request(f"Chunk number {i}.", voice("v2/en_speaker_0"), 0.5, seed=7, temp=0.8) for i in range(3)]
    fine_batches: list[int] = []
    fine = engine.pipeline._fine_and_codec

    def record(tasks):
        fine_batches.append(len(tasks))
        return fine(tasks)

    monkeypatch.setattr(engine.pipeline, "_fine_and_codec", record)
    with engine.scheduler._cond:  # the engine thread sees the three at once: they run as one batch
        jobs.extend(engine.submit(r) for r in requests)
    for job in jobs:
        job.wait()
    assert fine_batches == [3]
    assert seen == [[True, True, True]] * 3  # each release came after the whole batch was settled
