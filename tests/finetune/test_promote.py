"""`finetune promote`: the evaluation's verdict decides, the adapter folder appears whole, and the served
adapter gives the tokens of the merged LoRA (peft's `merge_and_unload`, `finetune merge`)."""

from __future__ import annotations

import copy
import errno
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.config import EngineConfig
from barkserve.engine.adapters import AdapterLibrary, read_adapter
from barkserve.engine.base import GenerationRequest, text_inputs
from barkserve.engine.batched import BatchedEngine
from barkserve.engine.reference import ReferenceEngine
from barkserve.errors import ConfigError, StorageFull
from barkserve.finetune import run as runs
from barkserve.finetune.promote import VERDICT, peft_state, promote
from barkserve.options import SynthesisOptions
from barkserve.testing.check import StageTokens, reference_tokens, task_tokens
from barkserve.testing.tiny import make_tiny_adapter

TEXT = "Hello there, how are you today?"
OK = {"worse": False, "reason": "WER within the confidence interval of the base's"}
WORSE = {"worse": True, "reason": "WER 0.41 against the base's 0.12 (95% CI of the difference 0.2-0.38)"}


def write_run(folder: Path, base: Path, lora_rank: int | None = 2, seed: int = 0) -> Path:
    """A run folder as `finetune train` writes it (run.json, best.pt), its LoRA B made non-zero."""
    from transformers import BarkModel

    options = runs.TrainOptions(lora_rank=lora_rank, lora_alpha=4 if lora_rank else None, device="cpu", seed=seed)
    folder.mkdir(parents=True)
    record = {"format": runs.RUN_FORMAT, "version": 1, "base_model": str(base), "dataset": "data",
              "dataset_id": "x", "options": options.recorded()}  # fmt: skip
    runs.check_run(folder, record)
    state = {"semantic.lm_head.weight": torch.zeros(1)}  # a full run's weights (never read here)
    if lora_rank:
        holder = runs.build_model(BarkModel.from_pretrained(base), options)
        with torch.no_grad():  # a trained B is not zero; a random one stands in for training
            for name, param in holder.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.3)
        state = runs.trainable_state(holder)
    runs.save_checkpoint(folder / "best.pt", {"step": 7, "heldout": {}, "trainable": state})
    return folder


def write_verdict(run: Path, verdict: dict[str, Any]) -> None:
    (run / VERDICT).parent.mkdir(exist_ok=True)
    (run / VERDICT).write_text(json.dumps(verdict))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "run", tiny_model_dir)


def test_promote_refuses_a_run_without_a_verdict_or_with_a_worse_one(lora_run: Path, tmp_path: Path) -> None:
    assert not (lora_run / VERDICT).exists()
    with pytest.raises(ConfigError, match=r"run `barkserve finetune eval .*` first"):
        promote(lora_run, "alice", tmp_path)
    write_verdict(lora_run, WORSE)
    try:
        with pytest.raises(ConfigError, match=r"worse than its base model: WER 0\.41"):
            promote(lora_run, "alice", tmp_path)
        assert list(tmp_path.iterdir()) == []  # nothing was written
        forced = promote(lora_run, "alice", tmp_path, force=True)
        assert read_adapter(forced).info.eval == WORSE  # the verdict it was forced past goes with it
    finally:
        (lora_run / VERDICT).unlink()
    unevaluated = promote(lora_run, "bob", tmp_path, force=True)
    assert read_adapter(unevaluated).info.eval is None


def test_a_promoted_adapter_holds_the_runs_lora_and_where_it_came_from(lora_run: Path, tmp_path: Path) -> None:
    write_verdict(lora_run, OK)
    try:
        folder = promote(lora_run, "alice", tmp_path / "adapters")
    finally:
        (lora_run / VERDICT).unlink()
    adapter = read_adapter(folder)
    assert folder == tmp_path / "adapters" / "alice"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.json", "adapter.safetensors"]
    info = adapter.info
    assert (info.stages, info.lora_rank, info.lora_alpha, info.scale) == (("semantic", "coarse", "fine"), 2, 4, 2.0)
    assert (info.checkpoint, info.step, info.eval, info.run) == ("best", 7, OK, str(lora_run.resolve()))
    trained = runs.load_checkpoint(lora_run / "best.pt")["trainable"]
    ours = peft_state(adapter.tensors)
    assert set(ours) == set(trained) and all(torch.equal(ours[k], trained[k]) for k in trained)
    assert "semantic.layers.0.attn.att_proj.lora_A" in adapter.tensors


def test_the_adapter_folder_appears_whole_or_not_at_all(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(StorageFull):
        promote(lora_run, "alice", tmp_path, force=True)
    assert list(tmp_path.iterdir()) == []  # no adapter, no temporary folder
    monkeypatch.undo()
    promote(lora_run, "alice", tmp_path, force=True)
    with pytest.raises(ConfigError, match="exists; choose another --name"):
        promote(lora_run, "alice", tmp_path, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["alice"]


def test_promote_refuses_a_full_run_bad_names_and_missing_checkpoints(
    lora_run: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    full = write_run(tmp_path / "full", tiny_model_dir, lora_rank=None)
    with pytest.raises(ConfigError, match=r"full fine-tune.*`barkserve finetune merge"):
        promote(full, "alice", tmp_path / "adapters", force=True)
    for bad in ("", "a/b", "../up", "x+y", ".hidden"):
        with pytest.raises(ConfigError, match="an adapter name is"):
            promote(lora_run, bad, tmp_path / "adapters", force=True)
    with pytest.raises(ConfigError, match=r"no last\.pt yet"):
        promote(lora_run, "alice", tmp_path / "adapters", which="last", force=True)
    with pytest.raises(ConfigError, match=r"no run\.json"):
        promote(tmp_path, "alice", tmp_path / "adapters", force=True)


def test_the_cli_promotes_and_explains_a_refusal(lora_run: Path, tmp_path: Path) -> None:
    args = ["finetune", "promote", str(lora_run), "--name", "carol", "--adapters", str(tmp_path)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "finetune eval" in refused.output and "Traceback" not in refused.output
    done = CliRunner().invoke(main, [*args, "--force"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.strip().splitlines()[-1])["name"] == "carol"
    assert AdapterLibrary(tmp_path).names() == ["carol"]


def greedy(loaded: Any, adapter: str | None = None) -> GenerationRequest:
    options = SynthesisOptions(text_temp=0.0, waveform_temp=0.0, seed=0, max_duration_sec=0.8)
    return GenerationRequest(text_inputs(loaded.tokenizer, TEXT), None, options, adapter=adapter)


def engine_tokens(loaded: Any, adapters: list[Any], request: GenerationRequest) -> StageTokens:
    with BatchedEngine(loaded, EngineConfig(max_wait_ms=0), adapters=adapters) as engine:
        task = engine.submit(request)
        task.wait()
        return task_tokens(task)


def test_a_served_adapter_gives_the_tokens_of_peft_merging_it(tiny_loaded: Any, tmp_path: Path) -> None:
    folder = make_tiny_adapter(tmp_path, "alice", tiny_loaded.name, stages=("semantic", "fine"), rank=3, alpha=6)
    adapter = read_adapter(folder)
    # peft's own LoRA layers, loaded with the adapter's matrices and merged into a copy of the weights.
    options = runs.TrainOptions(stages=("semantic", "fine"), lora_rank=3, lora_alpha=6, device="cpu")
    holder = runs.build_model(copy.deepcopy(tiny_loaded.model), options)
    runs.load_trainable(holder, peft_state(adapter.tensors), "alice")
    merged = replace(tiny_loaded, model=holder.merge_and_unload().eval())
    expected = reference_tokens(ReferenceEngine(merged), greedy(tiny_loaded))  # BarkModel.generate
    served = engine_tokens(tiny_loaded, [adapter], greedy(tiny_loaded, "alice"))
    assert served.same_tokens(expected)
    base = engine_tokens(tiny_loaded, [adapter], greedy(tiny_loaded))
    assert not base.same_tokens(expected)  # the adapter changes the tokens: the check can fail


def test_a_promoted_run_serves_the_tokens_of_finetune_merge(lora_run: Path, tiny_loaded: Any, tmp_path: Path) -> None:
    from barkserve.config import ServerConfig
    from barkserve.finetune import merge_run
    from barkserve.models import load_model

    adapter = read_adapter(promote(lora_run, "alice", tmp_path / "adapters", force=True))
    out = merge_run(lora_run, tmp_path / "merged", offline=True)
    merged = load_model(str(out), ServerConfig(model=str(out), device="cpu", offline=True))
    expected = reference_tokens(ReferenceEngine(merged), greedy(merged))
    assert engine_tokens(tiny_loaded, [adapter], greedy(tiny_loaded, "alice")).same_tokens(expected)


def test_say_speaks_with_an_adapter_of_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    make_tiny_adapter(tmp_path / "adapters", "alice", tiny_model_dir, seed=1)
    say = ["say", "Hello there.", "--model", str(tiny_model_dir), "--offline", "--adapters", str(tmp_path / "adapters"),
           "--seed", "1", "--text-temp", "0", "--waveform-temp", "0", "--max-duration", "0.3"]  # fmt: skip
    made = {}
    for adapter in (None, "alice"):
        out = tmp_path / f"{adapter}.wav"
        result = CliRunner().invoke(main, [*say, "-o", str(out), *(["--adapter", adapter] if adapter else [])])
        assert result.exit_code == 0, result.output
        made[adapter] = out.read_bytes()
    assert made[None] != made["alice"]  # the adapter changed the speech
    unknown = CliRunner().invoke(main, [*say, "-o", str(tmp_path / "x.wav"), "--adapter", "bob"])
    assert unknown.exit_code != 0 and "+alice" in unknown.output and "Traceback" not in unknown.output
