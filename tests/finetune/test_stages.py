"""The training inputs are generation's inputs: teacher forcing on Bark's own greedy output gives it back.

For a causal model, the argmax at each teacher-forced position equals the greedy token generation
chose there only if the position sees exactly the context generation gave it. So this fails if the
semantic stage's training prompt (offset, padding, summed history, infer token) differs from what
transformers' `generate` builds. (The coarse and fine stages agree on most but not all positions
with the tiny random weights; why is still open, so they are not asserted here.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from barkserve.engine.inputs import BarkGeometry
from barkserve.finetune.prepare import Item
from barkserve.finetune.stages import semantic_logits


@pytest.fixture(scope="module")
def generated(tiny_loaded: Any) -> tuple[Any, Item]:
    """The base model's greedy semantic tokens and codes for a text (no voice), as a training item."""
    from barkserve.engine.base import GenerationRequest, text_inputs
    from barkserve.engine.reference import bark_inputs, run_stages
    from barkserve.options import SynthesisOptions

    options = SynthesisOptions(text_temp=0.0, waveform_temp=0.0, seed=0, max_duration_sec=1.5)
    text_ids = text_inputs(tiny_loaded.tokenizer, "Teacher forcing, checked.")
    input_ids, mask, _ = bark_inputs(GenerationRequest(text_ids, None, options), tiny_loaded.device)
    with torch.inference_mode():
        semantic, fine, _ = run_stages(tiny_loaded.model, input_ids, mask, None, options)
    assert len(semantic) > 20 and fine.shape[1] > 40
    return BarkGeometry.from_model(tiny_loaded.model), Item("g", text_ids, semantic, fine)


def test_semantic_teacher_forcing_gives_back_the_greedy_tokens(tiny_loaded: Any, generated: Any) -> None:
    geo, item = generated
    with torch.inference_mode():
        logits, labels = semantic_logits(tiny_loaded.model, geo, [item], "cpu")
    n = len(item.semantic)
    # Generation may pick 0..9,999 or end-of-speech (10,000); it suppresses the rest.
    np.testing.assert_array_equal(logits[0, :n, : geo.semantic_vocab + 1].argmax(-1).numpy(), item.semantic)
    assert labels[0, n] == geo.eos
