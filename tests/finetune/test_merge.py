"""A trained run as a model: merged LoRA equals the adapter; the folder loads and serves like any checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from barkserve.errors import ConfigError
from barkserve.finetune import load_trained, merge_run

TEXT = "Hello there, how are you today?"


def greedy_tokens(loaded: Any) -> tuple[np.ndarray, np.ndarray]:
    """(semantic (S,), fine (8, C)) of TEXT with a preset voice, greedy in every stage."""
    from barkserve.engine.base import GenerationRequest, text_inputs
    from barkserve.engine.reference import bark_inputs, run_stages
    from barkserve.options import SynthesisOptions
    from barkserve.voices import PresetIndex

    options = SynthesisOptions(text_temp=0.0, waveform_temp=0.0, seed=0, max_duration_sec=1.0)
    voice = PresetIndex(loaded.name, local_files_only=True).load("v2/en_speaker_6")
    request = GenerationRequest(text_inputs(loaded.tokenizer, TEXT), voice, options)
    input_ids, mask, history = bark_inputs(request, loaded.device)
    with torch.inference_mode():
        semantic, fine, _ = run_stages(loaded.model, input_ids, mask, history, options)
    return semantic, fine


@pytest.fixture(scope="module")
def merged(trained_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from barkserve.config import ServerConfig
    from barkserve.models import load_model

    out = merge_run(trained_run.run_dir, tmp_path_factory.mktemp("merged") / "model", offline=True)
    return load_model(str(out), ServerConfig(model=str(out), device="cpu", offline=True))


def test_merged_lora_gives_the_greedy_tokens_of_the_unmerged_adapter(trained_run: Any, merged: Any) -> None:
    unmerged, peft_model = load_trained(trained_run.run_dir, "best", offline=True)
    assert peft_model is not None  # the adapters are still separate layers
    semantic, fine = greedy_tokens(unmerged)
    merged_semantic, merged_fine = greedy_tokens(merged)
    np.testing.assert_array_equal(merged_semantic, semantic)
    np.testing.assert_array_equal(merged_fine, fine)


def test_the_merged_model_differs_from_the_base_only_in_trained_projections(merged: Any, tiny_loaded: Any) -> None:
    base = dict(tiny_loaded.model.named_parameters())
    changed = [n for n, p in merged.model.named_parameters() if not torch.equal(p, base[n])]
    assert changed and all(n.split(".")[0] in {"semantic", "coarse_acoustics", "fine_acoustics"} for n in changed)
    assert all(n.endswith(("att_proj.weight", "out_proj.weight", "in_proj.weight")) for n in changed)


def test_the_merged_folder_keeps_the_base_presets_and_tokenizer(merged: Any, tiny_model_dir: Path) -> None:
    from barkserve.voices import PresetIndex

    ours, base = PresetIndex(merged.name, True), PresetIndex(str(tiny_model_dir), True)
    assert ours.names() == base.names()
    np.testing.assert_array_equal(ours.load("v2/en_speaker_3").fine, base.load("v2/en_speaker_3").fine)
    assert merged.tokenizer(TEXT)["input_ids"] == base_tokenizer_ids(tiny_model_dir)


def base_tokenizer_ids(model_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(model_dir)(TEXT)["input_ids"])


def test_merging_into_an_existing_folder_or_a_missing_checkpoint_is_refused(trained_run: Any, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="exists"):
        merge_run(trained_run.run_dir, tmp_path / "taken", offline=True)
    with pytest.raises(ConfigError, match="checkpoint must be one of"):
        merge_run(trained_run.run_dir, tmp_path / "new", which="first", offline=True)
    with pytest.raises(ConfigError, match=r"no run\.json"):
        merge_run(tmp_path, tmp_path / "new", offline=True)
