"""The logit rules and token picks of the batched engine, on small tensors."""

from __future__ import annotations

import torch

from barkserve.engine.sampling import (
    Sampler,
    alternate_codebooks,
    force_eos_above,
    pick_tokens,
    probs_at,
    suppress_non_semantic,
)

INF = float("inf")


def test_suppress_non_semantic_masks_every_id_above_end_of_speech():
    logits = torch.arange(12, dtype=torch.float32).reshape(2, 6)  # [2, 6], eos = 3
    out = suppress_non_semantic(logits, eos=3)
    assert torch.equal(out[:, :4], logits[:, :4])  # semantic ids 0..2 and the end-of-speech id kept
    assert torch.all(out[:, 4:] == -INF)
    assert logits[0, 5] == 5  # the input is left as it was


def test_force_eos_above_leaves_only_end_of_speech_where_its_probability_passes_the_floor():
    # Row probabilities of id 2 (the end-of-speech id): 0.5 in row 0, 0.25 in rows 1 and 2.
    logits = torch.log(torch.tensor([[0.25, 0.25, 0.5, 0.0], [0.5, 0.25, 0.25, 0.0], [0.5, 0.25, 0.25, 0.0]]))
    out = force_eos_above(logits, [0.4, 0.4, None], eos=2)
    assert out[0, 2] == logits[0, 2] and torch.all(out[0, [0, 1, 3]] == -INF)  # 0.5 > 0.4: stop
    assert torch.equal(out[1], logits[1])  # 0.25 <= 0.4: go on
    assert torch.equal(out[2], logits[2])  # no floor


def test_force_eos_above_without_floors_returns_the_logits_untouched():
    logits = torch.zeros(2, 5)
    assert force_eos_above(logits, [None, None], eos=1) is logits


def test_alternate_codebooks_keeps_one_codebook_per_row():
    logits = torch.zeros(2, 7)  # [2, C]: codebook size 3, so columns 0..2 first, 3..6 second
    out = alternate_codebooks(logits, torch.tensor([False, True]), codebook=3)
    assert torch.all(out[0, :3] == 0) and torch.all(out[0, 3:] == -INF)
    assert torch.all(out[1, :3] == -INF) and torch.all(out[1, 3:] == 0)


def test_pick_tokens_is_greedy_at_zero_and_draws_from_each_rows_generator():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, -INF, 0.0]])  # [2, 3]
    greedy = Sampler(0.0, torch.Generator().manual_seed(0))
    assert pick_tokens(logits, [greedy, greedy]).tolist() == [1, 0]
    draws = {int(pick_tokens(logits, [greedy, Sampler(1.0, torch.Generator().manual_seed(s))])[1]) for s in range(20)}
    assert draws == {0, 2}  # the masked id is never drawn; both others are
    again = [pick_tokens(logits, [greedy, Sampler(1.0, torch.Generator().manual_seed(7))]) for _ in range(2)]
    assert torch.equal(again[0], again[1])  # the generator's seed decides the draw


def test_pick_tokens_draws_all_positions_of_a_row_at_once():
    logits = torch.log(torch.tensor([[0.5, 0.5, 0.0]] * 4))[None]  # [1, P=4, V=3]
    tokens = pick_tokens(logits, [Sampler(1.0, torch.Generator().manual_seed(3))])
    assert tokens.shape == (1, 4) and set(tokens[0].tolist()) <= {0, 1}
    expected = torch.multinomial(torch.softmax(logits[0], -1), 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(tokens[0], expected[:, 0])


def test_a_vanishing_temperature_samples_the_argmax_instead_of_nan():
    logits = torch.tensor([[0.5, 2.0, -1.0], [3.0, 3.5, 1.0]])
    probs = probs_at(logits, 2.2250738585072014e-308)  # dividing first would overflow: inf - inf
    assert torch.isfinite(probs).all()
    assert torch.equal(probs, torch.nn.functional.one_hot(logits.argmax(-1), 3).float())
    assert torch.allclose(probs_at(logits, 0.7), torch.softmax(logits / 0.7, -1))  # unchanged otherwise
