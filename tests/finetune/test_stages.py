"""The training inputs are generation's inputs: teacher forcing on Bark's own greedy output gives it back.

For a causal model, the argmax at each teacher-forced position equals the greedy token generation
chose there only if the position sees exactly the context generation gave it. So these fail if the
semantic or coarse training prompt (offsets, padding, summed history, infer token, interleaving)
differs from what transformers' `generate` builds. The fine model is not causal (every frame sees
the whole window), so its check also needs every frame after the clip to be what generation put
there when it predicted each codebook.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from barkserve.engine.inputs import BarkGeometry
from barkserve.finetune.prepare import Item
from barkserve.finetune.stages import IGNORE, semantic_logits


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


def test_coarse_teacher_forcing_gives_back_the_greedy_tokens(tiny_loaded: Any, generated: Any) -> None:
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    from barkserve.finetune.stages import coarse_logits

    geo, item = generated
    model, gc = tiny_loaded.model, tiny_loaded.model.generation_config
    with torch.inference_mode():
        out = model.coarse_acoustics.generate(
            torch.as_tensor(item.semantic)[None],
            semantic_generation_config=BarkSemanticGenerationConfig(**gc.semantic_config),
            coarse_generation_config=BarkCoarseGenerationConfig(**gc.coarse_acoustics_config),
            codebook_size=geo.codebook,
            do_sample=False,
        )[0].numpy()  # interleaved coarse tokens, offset into the coarse vocabulary
    # Random weights sometimes end a window with a token outside the codebooks, which shifts the
    # interleaving of the windows after it; compare up to there (at least one 60-token window).
    span = np.arange(len(out))
    start = geo.semantic_vocab + (span % 2) * geo.codebook
    outside = np.flatnonzero((out < start) | (out >= start + geo.codebook))
    n = (int(outside[0]) if outside.size else len(out)) // 2 * 2
    assert n >= geo.window
    codes = np.zeros((geo.n_fine, n // 2), dtype=np.int64)
    codes[: geo.n_coarse] = (out[:n] - start[:n]).reshape(-1, 2).T  # the training item's codes
    with torch.inference_mode():
        logits, _ = coarse_logits(model, geo, [Item("c", item.text_ids, item.semantic, codes)], [0], "cpu")
    picked = [int(logits[0, i, start[i] : start[i] + geo.codebook].argmax()) + start[i] for i in range(n)]
    np.testing.assert_array_equal(np.asarray(picked), out[:n])


@pytest.mark.parametrize("frames", [None, 700, 1024])
def test_fine_teacher_forcing_gives_back_the_greedy_codes(tiny_loaded: Any, generated: Any, frames: int | None) -> None:
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkFineGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    from barkserve.finetune.stages import fine_batch, fine_logits

    geo, item = generated
    model, gc = tiny_loaded.model, tiny_loaded.model.generation_config
    coarse = torch.as_tensor(item.codes[: geo.n_coarse])  # the clip's coarse codes, or random ones of a length
    if frames is not None:
        coarse = torch.randint(0, geo.codebook, (geo.n_coarse, frames), generator=torch.Generator().manual_seed(frames))
    offsets = geo.semantic_vocab + geo.codebook * torch.arange(geo.n_coarse)[:, None]
    with torch.inference_mode():
        out = model.fine_acoustics.generate(
            (coarse + offsets).T.reshape(1, -1),  # interleaved and offset, as the coarse stage returns them
            semantic_generation_config=BarkSemanticGenerationConfig(**gc.semantic_config),
            coarse_generation_config=BarkCoarseGenerationConfig(**gc.coarse_acoustics_config),
            fine_generation_config=BarkFineGenerationConfig(**gc.fine_acoustics_config),
            codebook_size=geo.codebook,
            temperature=None,  # the argmax
        )[0].numpy()
    n = out.shape[1]
    codes = fine_batch(geo, [Item("f", item.text_ids, item.semantic, out)], [0])
    with torch.inference_mode():
        predicted = {k: (logits, labels) for k, logits, labels in fine_logits(model, geo, codes, range(2, 8))}
    assert sorted(predicted) == list(range(geo.n_coarse, geo.n_fine))
    for k, (logits, labels) in predicted.items():
        np.testing.assert_array_equal(logits[0, :n, : geo.codebook].argmax(-1).numpy(), out[k], err_msg=f"codebook {k}")
        assert (labels[0, :n] == torch.as_tensor(out[k])).all() and (labels[0, n:] == IGNORE).all()
