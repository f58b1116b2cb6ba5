"""A KV cache allocated once per stage: rows are slots, active rows stay packed in slots [0, n)."""

from __future__ import annotations

from typing import Any

import torch


class KVCache:
    """Keys and values of every layer for up to `max_rows` sequences of up to `max_len` tokens.

    Rows are packed: the n active rows live in slots 0..n-1, so every step works on plain views
    `k[layer, :n]` (no gather). Removing a row moves the last row into its slot.
    """

    def __init__(self, n_layers: int, max_rows: int, n_heads: int, max_len: int, head_dim: int, **tensor: Any):
        # One spare position past max_len, never read: a step's view never spans the whole position
        # axis, so a step compiled with dynamic shapes has one case, not two (torch compiles a view
        # that is the whole axis apart: engine/decode.py, "fused").
        shape = (n_layers, max_rows, n_heads, max_len + 1, head_dim)
        self.k = torch.zeros(shape, **tensor)  # [L, B, H, T + 1, Dh]
        self.v = torch.zeros(shape, **tensor)  # [L, B, H, T + 1, Dh]
        self.max_rows = max_rows
        self.max_len = max_len
        # Valid positions per slot, kept on the host: every change is known without asking the device.
        self.lengths: list[int] = []

    @property
    def n(self) -> int:
        return len(self.lengths)

    def add_row(self) -> int:
        """Claim the next slot (its length starts at 0); returns the slot index."""
        if self.n >= self.max_rows:
            raise RuntimeError("KV cache is full")
        self.lengths.append(0)
        return self.n - 1

    def remove_row(self, slot: int) -> None:
        """Free `slot`, moving the last row into it so that active rows stay packed."""
        last = self.n - 1
        if slot != last:
            self.k[:, slot].copy_(self.k[:, last])
            self.v[:, slot].copy_(self.v[:, last])
            self.lengths[slot] = self.lengths[last]
        self.lengths.pop()

    def write_prefill(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store a prefill's keys and values from position 0. k, v: [m, H, T, Dh]; slots: [m]."""
        t = k.shape[2]
        self.k[layer, slots, :, :t] = k
        self.v[layer, slots, :, :t] = v

    def write_step(self, layer: int, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store one new token per active row at `positions`. k, v: [n, H, 1, Dh]; positions: [n]."""
        rows = torch.arange(k.shape[0], device=k.device)
        if torch.compiler.is_compiling():
            # The layer as an index tensor too: one indexed write into the whole cache, not into a
            # layer's view of it, which a compiled step would turn into a copy of the whole cache per
            # step; this way it is an in-place write of n tokens (engine/decode.py, "fused").
            layers = torch.full_like(rows, layer)
            self.k[layers, rows, :, positions] = k[:, :, 0]
            self.v[layers, rows, :, positions] = v[:, :, 0]
            return
        self.k[layer, rows, :, positions] = k[:, :, 0]
        self.v[layer, rows, :, positions] = v[:, :, 0]

    def step_args(self, static: bool) -> tuple[list[int], int]:
        """Where each row's next token goes, and how many positions a decode step reads.

        Dynamic: the n active rows and up to their longest length. Static (fixed shapes, for a
        compiled step or CUDA graphs): every slot and the whole cache; idle slots write position 0,
        which a prefill overwrites before the slot is used.
        """
        if static:
            return self.lengths + [0] * (self.max_rows - self.n), self.max_len
        return list(self.lengths), max(self.lengths) + 1

    def view(self, layer: int, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the first n rows, first `length` positions: [n, H, length, Dh] each."""
        return self.k[layer, :n, :, :length], self.v[layer, :n, :, :length]
