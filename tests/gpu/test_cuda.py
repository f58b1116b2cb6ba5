"""The CUDA path: the batched engine's greedy tokens equal `BarkModel.generate`'s on the GPU, in eager,
CUDA-graphs and fused (inductor-compiled step inside the graphs) decode, and a server on `--device cuda`
answers from the GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from barkserve.config import EngineConfig
from barkserve.engine.base import GenerationRequest
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.reference import ReferenceEngine
from barkserve.options import SynthesisOptions
from barkserve.testing.check import reference_tokens, task_tokens
from barkserve.voices import VoicePrompt

pytestmark = pytest.mark.gpu
# (text, voice, seconds): rows of different lengths and voices, one without a voice, one past 630
# coarse tokens (its coarse windows slide).
MIXED = [
    ("Hi.", "v2/fr_speaker_4", 0.6),
    ("A much longer sentence, to be spoken at some length.", None, 4.4),
    ("Middle one!", "v2/zh_speaker_5", 2.0),
    ("Short", "v2/de_speaker_2", 1.2),
]


def requests_for(reference: ReferenceEngine, voices: Path) -> list[GenerationRequest]:
    out = []
    for text, name, sec in MIXED:
        voice = VoicePrompt.from_npz(voices / f"{name}.npz", name=name) if name else None
        options = SynthesisOptions(text_temp=0, waveform_temp=0, seed=1, max_duration_sec=sec)
        out.append(GenerationRequest(reference.tokenize(text), voice, options))
    return out


def run_batch(engine: BatchedEngine, requests: list[GenerationRequest]) -> list[Any]:
    tasks = [engine.submit(r) for r in requests]  # submitted together: they share batches
    for task in tasks:
        task.wait()
    return tasks


@pytest.mark.parametrize(("cuda_graphs", "mode"), [(False, "eager"), (True, "graphs"), (True, "fused")])
def test_engine_tokens_equal_the_reference_on_cuda(
    cuda_loaded: Any, voices_fixture_dir: Path, cuda_graphs: bool, mode: str
) -> None:
    import torch

    assert str(cuda_loaded.device).startswith("cuda") and next(cuda_loaded.model.parameters()).is_cuda
    reference = ReferenceEngine(cuda_loaded)
    requests = requests_for(reference, voices_fixture_dir)
    expected = [reference_tokens(reference, r) for r in requests]
    config = EngineConfig(max_batch_size=4, max_wait_ms=50, cuda_graphs=cuda_graphs)
    with BatchedEngine(cuda_loaded, config, decode="fused" if mode == "fused" else None) as engine:
        assert engine.decode_mode == mode  # graphs is the default on CUDA
        # Twice: the second run replays the graphs the first one captured.
        for _ in range(2):
            tasks = run_batch(engine, requests)
            for task, want, (text, voice, _) in zip(tasks, expected, MIXED, strict=True):
                assert task.fine is not None and task.fine.device.type == "cuda"  # made on the GPU
                got = task_tokens(task)
                assert got.same_tokens(want), (mode, text, voice)
                assert got.audio.shape == want.audio.shape
                np.testing.assert_allclose(got.audio, want.audio, atol=1e-3)
        decoders = (engine.pipeline.semantic.decode, engine.pipeline.coarse.decode)
        assert all(bool(d.graphs) == (mode != "eager") for d in decoders)  # the steps ran as captured graphs
    assert len({len(want.semantic) for want in expected}) == len(MIXED)  # rows left the batch at different steps
    torch.cuda.synchronize()


def test_a_server_on_cuda_answers_from_the_gpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    from barkserve.server import create_app
    from support import server_config

    app = create_app(server_config(tiny_model_dir, tmp_path, device="cuda", dtype="float32"), start_jobs=False)
    client = app.test_client()
    try:
        answer = client.post("/synthesize", json={"text": "Hello from the GPU.", "seed": 3, "max_duration_sec": 0.5})
        assert answer.status_code == 200, answer.data
        assert answer.get_json()["duration_sec"] > 0
        health = client.get("/health").get_json()
        loaded = health["models"][health["default_model"]]
        assert loaded["state"] == "loaded" and loaded["device"].startswith("cuda") and loaded["dtype"] == "float32"
        synth = app.extensions["barkserve"].synthesizer
        engine = synth.engine(synth.config.default_model)
        assert engine.decode_mode == "graphs" and str(engine.loaded.device).startswith("cuda")
    finally:
        app.extensions["barkserve"].synthesizer.close()
