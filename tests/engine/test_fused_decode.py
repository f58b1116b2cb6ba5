"""The "fused" decode mode: the per-token step compiled by inductor (C++ kernels on a CPU, Triton on a
GPU, where the engine's per-bucket CUDA graphs capture it), its greedy tokens equal to `BarkModel.generate`'s.

One compact test: compiling the step takes tens of seconds on a small CPU.
"""

from __future__ import annotations

import pytest

from barkserve.config import EngineConfig
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.decode import Decoder, decode_tokens
from barkserve.engine.kernels import onednn_available, onednn_stage
from barkserve.engine.kv import KVCache
from barkserve.errors import ConfigError


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_fused_decode_matches_reference_with_few_compilations(loaded, make_request, voice, assert_matches_reference):
    requests = [
        # Rows of different lengths leave at different steps: the batch shrinks to one row at the end.
        make_request("Fused kernels, one row with a voice.", voice("v2/fr_speaker_4"), 1.2),
        make_request("Short", None, 0.4),
        make_request("A middle one", voice("v2/en_speaker_2"), 0.8),
    ]
    before = compiled_graphs()
    # kernels "torch": inductor compiles the Linear layers itself (oneDNN's are for the eager step).
    config = EngineConfig(max_batch_size=4, max_wait_ms=50, kernels="torch")
    with BatchedEngine(loaded, config, decode="fused") as engine:
        stages = (engine.pipeline.semantic.decode, engine.pipeline.coarse.decode)
        assert all(d.mode == "fused" and d.step is not decode_tokens for d in stages)
        assert_matches_reference(engine, requests)
        compiled = compiled_graphs() - before
        # Twice: the second run reuses what the first compiled (no new compilation for new lengths).
        assert_matches_reference(engine, requests[:2])
        assert compiled_graphs() - before == compiled
    # The step really ran compiled, once: one graph for every number of rows and span of attention
    # (dynamic shapes, not one per bucket; a lone row runs in a two-row bucket), shared by the
    # semantic and coarse stages (their blocks have the same shapes).
    assert compiled == 1
    stages[0].cache.lengths[:] = [5]
    assert stages[0].bucket(1) == (2, 128)  # a lone row in a two-row bucket
    stages[0].cache.lengths[:] = []
    assert all(d.graphs == {} for d in stages)  # nothing is captured on a CPU


@pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")
def test_fused_decode_asks_for_torch_kernels_over_onednn_ones(loaded):
    # oneDNN's Linear ops (kernels "auto" on a CPU) cannot be compiled: say how to fix it, before compiling.
    model = onednn_stage(loaded.model.semantic, packed=False)
    cfg = model.config
    cache = KVCache(cfg.num_layers, 2, cfg.num_heads, 8, cfg.hidden_size // cfg.num_heads)
    with pytest.raises(ConfigError, match="kernels 'torch'"):
        Decoder(model, cache, "fused")


def test_the_compiled_step_writes_the_cache_in_place(loaded):
    # Inductor must write each row's new key and value into the cache, not copy the whole cache back
    # (what it does for a write through a layer's view of it: gigabytes per step at 64 rows).
    import torch
    from torch._inductor.utils import run_and_get_code

    from barkserve.engine.decode import fused_step

    model = loaded.model.semantic
    cfg = model.config
    cache = KVCache(cfg.num_layers, 4, cfg.num_heads, 64, cfg.hidden_size // cfg.num_heads)
    expected = KVCache(cfg.num_layers, 4, cfg.num_heads, 64, cfg.hidden_size // cfg.num_heads)
    tokens, positions = torch.tensor([5, 6, 7]), torch.tensor([3, 9, 1])
    torch._dynamo.reset()  # compile afresh, so that there is code to read
    with torch.inference_mode():
        _, code = run_and_get_code(fused_step(), model, tokens, positions, cache, 16)
        decode_tokens(model, tokens, positions, expected, 16)
    assert code and all("copy_" not in source for source in code)
    torch.testing.assert_close(cache.k, expected.k)  # the same keys and values, where they belong
    torch.testing.assert_close(cache.v, expected.v)


def test_the_fused_setting_picks_the_fused_decode_and_torch_kernels(loaded):
    # `fused` (BARKSERVE_FUSED, --fused) is how a server turns the mode on: it goes before `compile`
    # and keeps kernels "auto" off oneDNN, whose ops inductor cannot compile.
    from barkserve.engine.batched import decode_mode

    assert decode_mode(EngineConfig(fused=True, compile=True), "cpu") == "fused"
    assert decode_mode(EngineConfig(), "cpu") == "eager"
    engine = BatchedEngine(loaded, EngineConfig(fused=True))
    try:
        assert engine.pipeline.semantic.decode.mode == "fused"
        assert engine.pipeline.coarse.decode.mode == "fused"
    finally:
        engine.close()
