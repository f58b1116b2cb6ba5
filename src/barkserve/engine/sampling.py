"""Choosing tokens from logits, row by row: greedy at temperature 0, else each row's own generator."""

from __future__ import annotations

import torch


def probs_at(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax at a temperature. logits: [..., V] float32 -> probabilities [..., V]."""
    return torch.softmax(logits / temperature, dim=-1)


def pick_tokens(logits: torch.Tensor, temps: list[float], generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row. logits: [n, V] (masked entries -inf) -> tokens [n] long.

    Each sampled row draws from its own generator, so a request's tokens depend on its seed and
    its logits alone, not on which other rows share the batch.
    """
    tokens = torch.argmax(logits, dim=-1)  # [n]
    for i, temp in enumerate(temps):
        if temp > 0:
            tokens[i] = torch.multinomial(probs_at(logits[i], temp), 1, generator=generators[i])[0]
    return tokens
