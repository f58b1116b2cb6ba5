"""Greedy tokens of the batched engine equal `BarkModel.generate`'s, stage by stage."""

from __future__ import annotations

import numpy as np
import pytest

from barkserve.config import EngineConfig
from barkserve.engine.batched import BatchedEngine, decode_mode
from barkserve.testing.check import reference_tokens, task_tokens


@pytest.mark.parametrize(
    ("voice_name", "sec"),
    [
        (None, 1.0),
        # With a voice history the coarse windows slide from the second window on.
        ("v2/en_speaker_6", 1.5),
    ],
)
def test_batch_of_one_matches_reference(engine, reference, make_request, voice, voice_name, sec):
    request = make_request("Hello there, my friend. [laughs]", voice(voice_name) if voice_name else None, sec)
    expected = reference_tokens(reference, request)
    job = engine.submit(request)
    job.wait()
    got = task_tokens(job)

    assert len(expected.semantic) > 0 and expected.coarse.shape[0] == 2 * expected.fine.shape[1]
    np.testing.assert_array_equal(got.semantic, expected.semantic)
    np.testing.assert_array_equal(got.coarse, expected.coarse)
    np.testing.assert_array_equal(got.fine, expected.fine)
    assert got.audio.shape == expected.audio.shape
    np.testing.assert_allclose(got.audio, expected.audio, atol=1e-4)


def test_every_row_of_a_mixed_batch_matches_reference_alone(engine, reference, make_request, voice):
    requests = [
        make_request("Hi.", voice("v2/fr_speaker_4"), 0.6),
        # Past 630 coarse tokens the windows slide even without a voice history.
        make_request("A much longer sentence, to be spoken at some length.", None, 4.4),
        make_request("Middle one!", voice("v2/zh_speaker_5"), 2.0),
        make_request("Short", voice("v2/de_speaker_2"), 1.2),
    ]
    jobs = [engine.submit(r) for r in requests]
    for job in jobs:
        job.wait()

    for request, job in zip(requests, jobs, strict=True):
        expected = reference_tokens(reference, request)
        got = task_tokens(job)
        assert got.same_tokens(expected), f"tokens differ for {request.voice and request.voice.name}"
        assert got.audio.shape == expected.audio.shape
        np.testing.assert_allclose(got.audio, expected.audio, atol=1e-4)
    # Rows really had different lengths, so rows left the batch at different steps.
    assert len({len(job.semantic) for job in jobs}) == len(jobs)


def test_min_eos_p_stops_a_row_without_touching_the_others(engine, reference, make_request, voice):
    # A floor this low is reached by the end-of-speech probability at the first step.
    stopping = make_request("Stop at once.", voice("v2/en_speaker_1"), 2.0, min_eos_p=1e-9)
    other = make_request("Keep on talking, please.", voice("v2/en_speaker_2"), 1.5)
    jobs = [engine.submit(stopping), engine.submit(other)]
    audio = [job.wait().audio for job in jobs]

    assert jobs[0].semantic == [] and audio[0].shape == (0,)
    assert task_tokens(jobs[1]).same_tokens(reference_tokens(reference, other))
    # transformers' own stages agree: no semantic tokens, no frames, no audio. (`BarkModel.generate`
    # itself raises in EnCodec on zero frames; the reference engine answers with empty audio.)
    alone = reference.generate(stopping)
    assert alone.audio.shape == (0,) and alone.semantic is not None and alone.semantic.shape == (0,)
    assert alone.fine is not None and alone.fine.shape == (8, 0)


def test_a_voice_without_semantic_prompt_matches_reference(engine, reference, make_request, voice):
    from barkserve.voices import VoicePrompt

    preset = voice("v2/en_speaker_6")
    # A cloned voice may have no semantic prompt: the reference then keeps all its coarse history.
    cloned = VoicePrompt(np.zeros(0, dtype=np.int64), preset.coarse, preset.fine, name="cloned")
    request = make_request("Cloned voice.", cloned, 1.0)
    job = engine.submit(request)
    job.wait()
    assert task_tokens(job).same_tokens(reference_tokens(reference, request))


def test_fixed_shape_decode_matches_reference(loaded, make_request, voice, assert_matches_reference):
    """The decode step `--compile` uses: every slot over the whole cache, idle slots masked."""
    requests = [
        make_request("Fixed shapes.", voice("v2/pt_speaker_2"), 1.4),
        make_request("Short", None, 0.5),
    ]
    with BatchedEngine(loaded, EngineConfig(max_batch_size=4, max_wait_ms=50), decode="static") as engine:
        assert_matches_reference(engine, requests)


def test_compiled_decode_matches_reference(loaded, make_request, voice, assert_matches_reference):
    """`--compile`: torch.compile of the fixed-shape step (CUDA graphs on a GPU; plain on a CPU)."""
    requests = [make_request("Compiled step.", None, 1.0), make_request("Another one", voice("v2/en_speaker_2"), 0.6)]
    with BatchedEngine(loaded, EngineConfig(compile=True, max_wait_ms=50)) as engine:
        assert engine.pipeline.semantic.decode.mode == engine.pipeline.coarse.decode.mode == "compile"
        assert_matches_reference(engine, requests)


def test_bucketed_decode_matches_reference(loaded, make_request, voice, assert_matches_reference):
    """`--cuda-graphs`: the step over bucketed shapes (rows up to a power of two, span up to a multiple
    of 128), run eagerly on a CPU; on a GPU the same shapes are captured and replayed."""
    requests = [
        make_request("Three rows share a four-row bucket.", voice("v2/de_speaker_3"), 1.6),
        make_request("Short", None, 0.4),
        make_request("A middle one", voice("v2/en_speaker_2"), 0.9),
    ]
    with BatchedEngine(loaded, EngineConfig(max_batch_size=8, max_wait_ms=50), decode="graphs") as engine:
        assert_matches_reference(engine, requests)
        assert engine.pipeline.semantic.decode.graphs == {}  # nothing is captured on a CPU


def test_decode_buckets_round_rows_and_span_up(loaded):
    with BatchedEngine(loaded, EngineConfig(max_batch_size=6), decode="graphs") as engine:
        decoder = engine.pipeline.semantic.decode
        decoder.cache.lengths[:] = [300, 5, 129]
        assert decoder.bucket(1) == (1, 384)  # the first row alone: 301 positions -> 384
        assert decoder.bucket(2) == (2, 384)
        assert decoder.bucket(3) == (4, 384)
        decoder.cache.lengths[:] = [1023] * 5
        assert decoder.bucket(5) == (6, 1024)  # at most the cache's rows and length
        decoder.cache.lengths[:] = []


def test_decode_mode_follows_the_settings():
    assert decode_mode(EngineConfig(), "cpu") == "eager"
    assert decode_mode(EngineConfig(cuda_graphs=True), "cpu") == "eager"  # no effect on a CPU
    assert decode_mode(EngineConfig(cuda_graphs=True), "mps") == "eager"
    assert decode_mode(EngineConfig(cuda_graphs=True), "cuda") == "graphs"
    assert decode_mode(EngineConfig(cuda_graphs=True, compile=True), "cuda:0") == "compile"
    assert decode_mode(EngineConfig(), "cuda") == "graphs"  # the default on a GPU
    assert decode_mode(EngineConfig(cuda_graphs=False), "cuda") == "eager"
