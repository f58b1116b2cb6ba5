"""The reference engine runs transformers' own stages and gives what BarkModel.generate gives."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from barkserve.engine import GenerationRequest, ReferenceEngine
from barkserve.engine.reference import stage_kwargs
from barkserve.options import SynthesisOptions
from barkserve.voices import VoicePrompt


@pytest.fixture(scope="module")
def engine(tiny_loaded: Any) -> ReferenceEngine:
    return ReferenceEngine(tiny_loaded)


@pytest.mark.parametrize(("temp", "min_eos_p"), [(0.0, None), (0.7, None), (0.7, 0.2)])
def test_same_audio_as_barkmodel_generate(
    engine: ReferenceEngine, voices_fixture_dir: Path, temp: float, min_eos_p: float | None
) -> None:
    voice = VoicePrompt.from_npz(voices_fixture_dir / "v2" / "en_speaker_2.npz")
    options = SynthesisOptions(text_temp=temp, waveform_temp=temp, seed=3, max_duration_sec=0.6, min_eos_p=min_eos_p)
    ids = engine.tokenize("The reference, step by step.")
    ours = engine.generate(GenerationRequest(text_ids=ids, voice=voice, options=options))

    model = engine.loaded.model
    pad = 256 - len(ids)
    input_ids = torch.nn.functional.pad(torch.as_tensor(ids)[None], (0, pad))
    mask = torch.nn.functional.pad(torch.ones(1, len(ids), dtype=torch.long), (0, pad))
    history = {k: torch.as_tensor(v) for k, v in voice.arrays().items()}
    torch.manual_seed(3)
    audio, lengths = model.generate(
        input_ids, attention_mask=mask, history_prompt=history, return_output_lengths=True, **stage_kwargs(options)
    )
    expected = audio[0, : lengths[0]].numpy()
    assert np.array_equal(ours.audio, expected)
    assert ours.fine is not None and ours.semantic is not None
    assert ours.fine.shape == (8, len(ours.audio) // 320)
    assert ours.semantic.max() < 10_000 and len(ours.semantic) <= options.max_semantic_tokens
    # the tokens make a valid voice prompt for the next chunk (long-form history)
    VoicePrompt(semantic=ours.semantic, coarse=ours.fine[:2], fine=ours.fine)
