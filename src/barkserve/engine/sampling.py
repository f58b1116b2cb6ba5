"""Choosing tokens from logits: the logit rules of each stage, then greedy or sampled picks per row.

The rules are pure functions (logits in, masked logits out), like whisper's logit filters; masked
entries become -inf. Sampled rows draw from their own generator, so a request's tokens depend on its
seed and its logits alone, not on which other rows share the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

NEG_INF = -float("inf")


class Sampler(NamedTuple):
    """How one row picks its tokens: greedy at temperature 0, else sampled with its own generator."""

    temperature: float
    generator: torch.Generator


def probs_at(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax at a temperature. logits: [..., V] float32 -> probabilities [..., V].

    The largest logit is subtracted first: with a temperature so small that dividing overflows, the
    top entry stays 0 and the rest go to -inf, so the result is the argmax's one-hot (the limit of
    sampling as the temperature goes to 0) instead of inf - inf = NaN. A temperature the logits'
    dtype cannot even hold (2.2e-308 is 0 in float32) goes straight to that limit.
    """
    if temperature < torch.finfo(logits.dtype).tiny:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    top = logits.amax(dim=-1, keepdim=True)  # [..., 1]
    return torch.softmax((logits - top) / temperature, dim=-1)


def pick_tokens(logits: torch.Tensor, samplers: Sequence[Sampler]) -> torch.Tensor:
    """Tokens of each row with its own sampler. logits: [n, V] or [n, P, V] -> tokens [n] or [n, P].

    A row's P positions (the fine stage's) are drawn in one call on its generator.
    """
    tokens = torch.argmax(logits, dim=-1)  # [n] or [n, P]
    for i, sampler in enumerate(samplers):
        if sampler.temperature > 0:
            probs = probs_at(logits[i], sampler.temperature)  # [V] or [P, V]
            tokens[i] = torch.multinomial(probs, 1, generator=sampler.generator).squeeze(-1)
    return tokens


def suppress_non_semantic(logits: torch.Tensor, eos: int) -> torch.Tensor:
    """Semantic stage: only semantic ids and end-of-speech may follow. logits: [n, V] -> [n, V].

    Ids above `eos` (Bark's padding and infer ids) get -inf, as the reference suppresses them.
    """
    out = logits.clone()
    out[:, eos + 1 :] = NEG_INF
    return out


def force_eos_above(logits: torch.Tensor, floors: Sequence[float | None], eos: int) -> torch.Tensor:
    """Semantic stage, Suno's `min_eos_p`: a row whose end-of-speech probability exceeds its floor
    keeps only the end-of-speech logit. logits: [n, V]; floors[i]: row i's floor or None -> [n, V].
    """
    if all(p is None for p in floors):
        return logits
    # A floor of 2.0 is never exceeded: rows without min_eos_p go on as they are.
    floor = torch.tensor([p if p is not None else 2.0 for p in floors], device=logits.device)  # [n]
    stop = torch.softmax(logits, dim=-1)[:, eos] > floor  # [n]
    only_eos = torch.full_like(logits, NEG_INF)  # [n, V]
    only_eos[:, eos] = logits[:, eos]
    return torch.where(stop[:, None], only_eos, logits)


def alternate_codebooks(logits: torch.Tensor, second: torch.Tensor, codebook: int) -> torch.Tensor:
    """Coarse stage: tokens alternate between the two codebooks (`AlternatingCodebooksLogitsProcessor`).

    logits: [n, C] over the coarse ids (column 0 is the first codebook's code 0); second: [n] bool,
    True where the row's next token belongs to the second codebook. Rows for the first codebook keep
    columns [0, codebook); rows for the second keep everything from `codebook` on (the reference's
    mask). -> [n, C].
    """
    in_second = torch.arange(logits.shape[-1], device=logits.device) >= codebook  # [C]
    allowed = in_second[None] == second[:, None]  # [n, C]
    return logits.masked_fill(~allowed, NEG_INF)
