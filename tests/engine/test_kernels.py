"""oneDNN Linear layers: the same products, on copies of the module tree, only where they can run."""

from __future__ import annotations

import pytest
import torch

from barkserve.config import EngineConfig
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.kernels import OneDnnLinear, onednn_available, onednn_mode, onednn_stage
from barkserve.errors import ConfigError

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN")


@needs_onednn
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("first_row", [0, 5])
@pytest.mark.parametrize("shape", [(1, 48), (7, 48), (3, 11, 48)])
def test_onednn_linear_computes_the_layer_from_its_first_row(packed, bias, first_row, shape):
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 20, bias=bias)
    x = torch.randn(*shape)
    expected = torch.nn.functional.linear(
        x, layer.weight[first_row:], None if layer.bias is None else layer.bias[first_row:]
    )
    got = OneDnnLinear(layer, packed, first_row=first_row)(x)
    assert got.shape == (*shape[:-1], 20 - first_row)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("packed", [False, True])
def test_onednn_linear_reads_non_contiguous_inputs(packed):
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(16, 6).t()  # [6, 16], transposed storage
    torch.testing.assert_close(OneDnnLinear(layer, packed)(x), layer(x), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_unpacked_layers_read_the_checkpoint_weights_without_a_copy():
    layer = torch.nn.Linear(16, 8)
    fast = OneDnnLinear(layer, packed=False, first_row=2)
    assert fast.weight_rows.untyped_storage().data_ptr() == layer.weight.untyped_storage().data_ptr()
    with torch.no_grad():
        layer.weight[5].fill_(1.0)  # the layer's own rows are what it computes with
    x = torch.randn(3, 16)
    torch.testing.assert_close(fast(x)[:, 3], x.sum(dim=1) + layer.bias[5], rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("packed", [False, True])
def test_onednn_stage_is_a_copy_that_shares_everything_but_the_linear_layers(loaded, packed):
    coarse = loaded.model.coarse_acoustics
    fast = onednn_stage(coarse, packed, head_first_row=10_000)

    assert isinstance(fast.layers[0].attn.att_proj, OneDnnLinear)
    assert isinstance(fast.layers[-1].mlp.out_proj, OneDnnLinear)
    assert not any(type(m) is torch.nn.Linear for m in fast.modules())
    # The loaded model keeps its own layers; embeddings and norms are the same objects.
    assert type(coarse.layers[0].attn.att_proj) is torch.nn.Linear
    assert fast.input_embeds_layer is coarse.input_embeds_layer
    assert fast.layers[0].layernorm_1 is coarse.layers[0].layernorm_1
    # The coarse head skips the 10,000 semantic rows it never needs.
    assert fast.lm_head.first_row == 10_000
    assert fast.lm_head.out_features == coarse.lm_head.out_features - 10_000


@needs_onednn
def test_the_default_engine_on_a_cpu_runs_onednn_layers(loaded):
    with BatchedEngine(loaded) as engine:
        models = engine.pipeline.models
        for stage in (models.semantic, models.coarse_acoustics, models.fine_acoustics):
            assert isinstance(stage.layers[0].attn.att_proj, OneDnnLinear)
            assert not stage.layers[0].attn.att_proj.packed
    with BatchedEngine(loaded, EngineConfig(kernels="torch")) as engine:
        assert engine.pipeline.models.semantic is loaded.model.semantic


@needs_onednn
def test_packed_engine_matches_the_reference(loaded, make_request, voice, assert_matches_reference):
    requests = [
        make_request("Packed kernels.", voice("v2/ko_speaker_1"), 1.2),
        make_request("A second row without a voice", None, 0.8),
    ]
    with BatchedEngine(loaded, EngineConfig(kernels="packed", max_wait_ms=50)) as engine:
        assert engine.pipeline.models.fine_acoustics.layers[0].attn.att_proj.packed
        assert_matches_reference(engine, requests)


def test_engine_with_torch_kernels_also_matches_the_reference(loaded, make_request, voice, assert_matches_reference):
    requests = [
        make_request("Plain kernels.", voice("v2/it_speaker_3"), 1.2),
        make_request("And no voice at all", None, 0.8),
    ]
    with BatchedEngine(loaded, EngineConfig(kernels="torch", max_wait_ms=50)) as engine:
        assert_matches_reference(engine, requests)


@pytest.mark.parametrize(
    ("choice", "device", "dtype", "quantize"),
    [
        ("torch", "cpu", torch.float32, None),
        ("auto", "cpu", torch.bfloat16, None),
        ("auto", "cuda", torch.float32, None),
        ("auto", "cpu", torch.float32, "int8"),
    ],
)
def test_auto_kernels_use_onednn_only_for_fp32_cpu_weights(choice, device, dtype, quantize):
    assert onednn_mode(choice, device, dtype, quantize) is None


def test_a_compiled_step_keeps_torch_kernels():
    assert onednn_mode("auto", "cpu", torch.float32, None, compile=True) is None
    with pytest.raises(ConfigError, match="compile"):
        onednn_mode("packed", "cpu", torch.float32, None, compile=True)


@needs_onednn
def test_auto_kernels_on_fp32_cpu_weights_read_the_checkpoint_weights():
    assert onednn_mode("auto", "cpu", torch.float32, None) == "weights"
    assert onednn_mode("packed", "cpu", torch.float32, None) == "packed"


@pytest.mark.parametrize(
    ("device", "dtype", "quantize"),
    [("cuda", torch.float32, None), ("cpu", torch.bfloat16, None), ("cpu", torch.float32, "int8")],
)
def test_packed_kernels_are_refused_where_they_cannot_run(device, dtype, quantize):
    with pytest.raises(ConfigError, match="packed"):
        onednn_mode("packed", device, dtype, quantize)


def test_unknown_kernels_are_refused():
    with pytest.raises(ConfigError, match="kernels"):
        EngineConfig(kernels="mkl")
