"""LoRA adapters in the engines: rows of different adapters and of none share a batch, each gets its own tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from barkserve.config import EngineConfig
from barkserve.engine.adapters import AdapterLibrary, read_adapter
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.reference import ReferenceEngine
from barkserve.errors import ConfigError, InvalidModel
from barkserve.testing.check import StageTokens, task_tokens
from barkserve.testing.tiny import make_tiny_adapter

TEXT = "Hello there, my friend."


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """alice: every stage, rank 2; bob: semantic and coarse only, rank 3 (the banks pad ranks)."""
    root = tmp_path_factory.mktemp("adapters")
    make_tiny_adapter(root, "alice", tiny_model_dir, seed=1)
    make_tiny_adapter(root, "bob", tiny_model_dir, stages=("semantic", "coarse"), rank=3, alpha=3, seed=2)
    return root


@pytest.fixture(scope="module")
def adapters(adapters_dir: Path) -> list[Any]:
    library = AdapterLibrary(adapters_dir)
    return [library.get(name) for name in library.names()]


def run_alone(engine: BatchedEngine, request: Any) -> StageTokens:
    task = engine.submit(request)
    task.wait()
    return task_tokens(task)


def record_admissions(engine: BatchedEngine) -> list[list[int]]:
    """The adapter entries of each group of rows the semantic stage admits from now on."""
    seen: list[list[int]] = []
    admit = engine.pipeline.semantic.admit

    def recording(tasks: list[Any], ids: list[Any]) -> Any:
        if tasks:
            seen.append([t.adapter for t in tasks])
        return admit(tasks, ids)

    engine.pipeline.semantic.admit = recording  # type: ignore[method-assign]
    return seen


def run_together(engine: BatchedEngine, requests: list[Any]) -> list[StageTokens]:
    tasks = [engine.submit(r) for r in requests]
    for task in tasks:
        task.wait()
    return [task_tokens(t) for t in tasks]


def test_a_batch_mixing_two_adapters_and_the_base_gives_each_row_its_tokens_alone(
    loaded, adapters, make_request, voice
):
    from dataclasses import replace

    plain = make_request(TEXT, None, 0.6)
    requests = [
        plain,
        replace(plain, adapter="alice"),
        replace(make_request(TEXT, voice("v2/en_speaker_6"), 0.8), adapter="bob"),
        replace(make_request("Another line.", None, 0.5), adapter="alice"),
    ]
    with BatchedEngine(loaded, EngineConfig(max_batch_size=4, max_wait_ms=50), adapters=adapters) as engine:
        alone = [run_alone(engine, r) for r in requests]
        admitted = record_admissions(engine)
        together = run_together(engine, requests)
    assert admitted == [[0, 1, 2, 1]]  # the four rows (base, alice, bob, alice) entered one batch
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert a.same_tokens(b), f"row {i} changed in the mixed batch"
    # The adapters matter: the same request with alice and with none gives other tokens.
    assert len(alone[0].semantic) > 0
    assert not alone[0].same_tokens(alone[1])
    # The base rows of an engine with adapters are the base model's (an engine without any).
    with BatchedEngine(loaded, EngineConfig(max_batch_size=4, max_wait_ms=50)) as bare:
        assert run_alone(bare, plain).same_tokens(alone[0])


def test_bucketed_decode_with_adapters_matches_eager(loaded, adapters, make_request):
    """The decode step CUDA graphs replay always carries the LoRA path (base rows add zeros)."""
    from dataclasses import replace

    requests = [
        replace(make_request(TEXT, None, 0.6), adapter="bob"),
        make_request("Short", None, 0.4),
        replace(make_request("A middle one", None, 0.5), adapter="alice"),
    ]
    with BatchedEngine(loaded, EngineConfig(max_batch_size=4, max_wait_ms=50), adapters=adapters) as engine:
        eager = [run_alone(engine, r) for r in requests]
    config = EngineConfig(max_batch_size=4, max_wait_ms=50)
    with BatchedEngine(loaded, config, decode="graphs", adapters=adapters) as engine:
        assert engine.pipeline.semantic.adapters.always
        bucketed = run_together(engine, requests)
    assert all(a.same_tokens(b) for a, b in zip(eager, bucketed, strict=True))


def test_the_reference_engine_serves_the_adapter_like_the_batched_one(loaded, adapters, make_request):
    from dataclasses import replace

    request = replace(make_request(TEXT, None, 0.6), adapter="alice")
    with BatchedEngine(loaded, EngineConfig(max_wait_ms=0), adapters=adapters) as engine:
        batched = run_alone(engine, request)
    reference = ReferenceEngine(loaded, adapters)
    out = reference.generate(request)
    assert out.semantic is not None and out.fine is not None
    assert out.semantic.tolist() == batched.semantic.tolist()
    assert out.fine.tolist() == batched.fine.tolist()
    # Without an adapter it runs the loaded model itself.
    base = reference.generate(replace(request, adapter=None))
    assert base.semantic is not None and base.semantic.tolist() != out.semantic.tolist()


def test_an_engine_refuses_an_adapter_it_does_not_serve(loaded, adapters, make_request):
    from dataclasses import replace

    request = replace(make_request(TEXT, None, 0.2), adapter="carol")
    with BatchedEngine(loaded, EngineConfig(), adapters=adapters) as engine, pytest.raises(InvalidModel, match="carol"):
        engine.submit(request)
    with pytest.raises(InvalidModel, match=r"\['alice', 'bob'\]"):
        ReferenceEngine(loaded, adapters).generate(request)


def test_an_adapter_of_other_shapes_is_refused_when_the_engine_is_built(loaded, tmp_path, tiny_model_dir):
    import torch
    from safetensors.torch import load_file, save_file

    folder = make_tiny_adapter(tmp_path, "wide", tiny_model_dir)
    tensors = load_file(folder / "adapter.safetensors")
    key = "coarse.layers.1.mlp.in_proj.lora_A"
    tensors[key] = torch.zeros(2, 48)  # the tiny model's width is 32
    save_file(tensors, str(folder / "adapter.safetensors"))
    with pytest.raises(ConfigError, match=r"'wide' was trained on another base model: coarse.layers.1"):
        BatchedEngine(loaded, EngineConfig(), adapters=[read_adapter(folder)])


def _edit_info(folder: Path, **changes: Any) -> None:
    path = folder / "adapter.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _drop_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "adapter.safetensors")
    del tensors["fine.layers.1.attn.out_proj.lora_B"]
    save_file(tensors, str(folder / "adapter.safetensors"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "adapter.json").unlink(), "has no adapter.json"),
        (lambda f: (f / "adapter.json").write_text("{"), "cannot be read as JSON"),
        (lambda f: _edit_info(f, format="peft"), "not a barkserve adapter"),
        (lambda f: _edit_info(f, version=2), "format version 2"),
        (lambda f: _edit_info(f, name="other"), "names the adapter 'other'"),
        (lambda f: _edit_info(f, stages=["semantic", "text"]), "stages must be some of"),
        (lambda f: _edit_info(f, lora_rank=3), "with rank 3"),
        (lambda f: _edit_info(f, lora_alpha=None), "bad field"),
        (lambda f: _edit_info(f, stages=["semantic"]), "tensors of no stage it lists"),
        (_drop_tensor, "lacks the tensor fine.layers.1.attn.out_proj.lora_B"),
        (lambda f: (f / "adapter.safetensors").write_bytes(b"not tensors"), "cannot be read"),
    ],
)
def test_a_broken_adapter_folder_is_refused_with_why(tmp_path, tiny_model_dir, damage, message):
    folder = make_tiny_adapter(tmp_path, "alice", tiny_model_dir)
    read_adapter(folder)  # sound before the damage
    damage(folder)
    with pytest.raises(ConfigError, match=message):
        read_adapter(folder)
    with pytest.raises(ConfigError, match=message):
        AdapterLibrary(tmp_path)  # a server with a broken adapter does not start


def test_the_library_skips_promotions_in_progress_and_matches_the_base(tmp_path, tiny_model_dir):
    make_tiny_adapter(tmp_path, "alice", tiny_model_dir)
    (tmp_path / ".bob.partial").mkdir()
    library = AdapterLibrary(tmp_path)
    assert library.names() == ["alice"]
    assert library.names_for(str(tiny_model_dir)) == ["alice"]
    assert library.names_for("suno/bark-small") == []
    with pytest.raises(ConfigError, match="does not exist"):
        AdapterLibrary(tmp_path / "missing")
