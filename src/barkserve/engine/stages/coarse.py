"""Coarse stage: semantic tokens -> 2 interleaved codebooks, in the reference's sliding windows.

Each window is a fresh prompt (256 semantic tokens, the infer token, up to 630 coarse tokens). Where
that prompt is exactly the previous window's prompt plus its tokens (no voice history yet to slide
past: the first ~630 tokens without a voice), the cache already holds it and the window just goes
on decoding. Otherwise its positions have shifted and the prefill is real work, done batched, with
SDPA and the lm_head on the last position only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from barkserve.engine import gpt
from barkserve.engine.decode import Decoder
from barkserve.engine.inputs import BarkGeometry, coarse_histories, coarse_length, coarse_window
from barkserve.engine.kv import KVCache
from barkserve.engine.lora import RowAdapters, SlotAdapters
from barkserve.engine.sampling import alternate_codebooks, pick_tokens
from barkserve.engine.task import GenerationTask


@dataclass(eq=False)
class CoarseRow:
    """One task's progress through its windows."""

    task: GenerationTask
    semantic: np.ndarray  # voice semantic history + generated semantic tokens
    base: int  # length of the voice semantic history
    coarse: list[int]  # voice coarse history, then generated coarse tokens
    n_history: int
    target: int  # coarse tokens to generate in all
    done: int = 0  # tokens of finished windows
    in_window: int = 0  # tokens of the current window so far
    window_len: int = 0  # tokens the current window generates (0: between windows)
    prompt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # current window's
    context: np.ndarray | None = None  # last window's prompt + its tokens (cache holds all but the last)


def new_row(geo: BarkGeometry, task: GenerationTask) -> CoarseRow:
    sem_hist, coarse_hist = coarse_histories(geo, task.request.voice)
    semantic = np.concatenate([sem_hist, np.asarray(task.semantic, dtype=np.int64)])
    target = coarse_length(geo, len(task.semantic))
    return CoarseRow(task, semantic, len(sem_hist), coarse_hist.tolist(), len(coarse_hist), target)


class CoarseStage:
    """Owns the coarse model's KV cache; each row runs its windows, prefilled in batches."""

    def __init__(
        self,
        model: Any,
        geo: BarkGeometry,
        max_rows: int,
        device: Any,
        dtype: Any,
        decode: str = "eager",
        adapters: RowAdapters | None = None,
    ) -> None:
        self.model, self.geo, self.device = model, geo, device
        cfg = model.config
        max_len = coarse_cache_length(cfg, geo)
        self.cache = KVCache(
            cfg.num_layers, max_rows, cfg.num_heads, max_len, cfg.hidden_size // cfg.num_heads,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.rows: list[CoarseRow] = []  # rows[i] lives in cache slot i
        self.last = torch.zeros(max_rows, dtype=torch.long, device=device)  # last token per slot
        self.window = torch.zeros(max_rows, geo.window, dtype=torch.long, device=device)  # [B, 60]
        # The per-token step: eager, torch.compile or CUDA graphs (engine/decode.py).
        self.decode = Decoder(model, self.cache, decode)
        # Each slot's LoRA adapter (engine/lora.py); nothing to do when the engine serves none.
        self.adapters = SlotAdapters(adapters, max_rows, device, always=decode != "eager")

    @property
    def free(self) -> int:
        return self.cache.max_rows - self.cache.n

    def admit(self, tasks: list[GenerationTask]) -> list[GenerationTask]:
        """Add rows; tasks with no coarse tokens to make (no semantic tokens) come straight back."""
        empty = []
        for task in tasks:
            row = new_row(self.geo, task)
            if row.target == 0:
                task.coarse = np.zeros(0, dtype=np.int64)
                empty.append(task)
                continue
            self.cache.add_row()
            self.rows.append(row)
            self.adapters.add([task.adapter])
        return empty

    def step(self) -> list[GenerationTask]:
        """Start windows where due, one token for every row; returns tasks that finished."""
        if not self.rows:
            return []
        starting = [slot for slot, row in enumerate(self.rows) if row.window_len == 0]
        prefill = [slot for slot in starting if not self._continues(self.rows[slot])]
        if prefill:
            self._prefill(prefill)
        self._decode()
        return self._end_windows()

    def remove(self, slot: int) -> CoarseRow:
        """Drop the row in `slot`; the last row moves into its place."""
        row, last = self.rows[slot], len(self.rows) - 1
        self.rows[slot] = self.rows[last]
        self.rows.pop()
        self.last[slot] = self.last[last]
        self.window[slot] = self.window[last]
        self.adapters.remove(slot)
        self.cache.remove_row(slot)
        return row

    def _continues(self, row: CoarseRow) -> bool:
        """Set the row's next prompt; True when it extends the cached context by exactly its last token.

        Then the cache holds every position but the last (the previous window's final token, which is
        `last` of the slot), at the same positions, and one decode step starts the window.
        """
        row.window_len = min(self.geo.window, row.target - row.done)
        coarse = np.asarray(row.coarse, dtype=np.int64)
        row.prompt = coarse_window(self.geo, row.semantic, row.base, coarse, row.done)
        return row.context is not None and np.array_equal(row.prompt, row.context)

    def _prefill(self, slots: list[int]) -> None:
        """Run each starting row's window prompt (right-padded to the longest); take its first token."""
        prompts = [self.rows[s].prompt for s in slots]
        t = max(len(p) for p in prompts)
        ids = np.full((len(slots), t), self.geo.coarse_pad, dtype=np.int64)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = p
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)  # [m]
        positions = torch.arange(t, device=self.device)[None]  # [1, T]
        x = gpt.embed(self.model, torch.as_tensor(ids, device=self.device), positions)  # [m, T, D]
        slots_t = torch.tensor(slots, device=self.device)
        padded = any(len(p) != t for p in prompts)
        with self.adapters.rows_at(slots):
            last = gpt.causal_prefill(self.model, x, lengths, self.cache, slots_t, padded)  # [m, D]
        rows = [self.rows[s] for s in slots]
        for s, p in zip(slots, prompts, strict=True):
            self.cache.lengths[s] = len(p)
        tokens = self._choose(gpt.logits_at(self.model, last, self.geo.semantic_vocab), rows)  # [m]
        self.last[slots_t] = tokens
        self.window[slots_t, 0] = tokens
        for row in rows:
            row.in_window = 1

    def _decode(self) -> None:
        """One token for every row. Rows whose window is already full compute a token that is dropped
        (it cannot happen with Bark's even lengths, but keeps the batch a plain [0, n) view)."""
        n = self.cache.n
        with self.adapters.decode():
            hidden = self.decode(self.last, n)  # [n, 1, D]
        tokens = self._choose(gpt.logits_at(self.model, hidden[:, 0], self.geo.semantic_vocab), self.rows)
        took = [slot for slot, row in enumerate(self.rows) if row.in_window < row.window_len]
        # One host-to-device copy and two indexed writes for all rows (not a kernel per row).
        where = torch.tensor([took, [self.rows[s].in_window for s in took]], device=self.device)  # [2, k]
        self.last[where[0]] = tokens[where[0]]
        self.window[where[0], where[1]] = tokens[where[0]]
        for slot in took:
            self.rows[slot].in_window += 1
            self.cache.lengths[slot] += 1

    def _choose(self, logits: torch.Tensor, rows: list[CoarseRow]) -> torch.Tensor:
        """Alternate codebooks, then greedy or sample. logits: [m, V - 10000] for ids 10000.. -> ids [m]."""
        second = torch.tensor([row.in_window % 2 == 1 for row in rows], device=self.device)  # [m]
        logits = alternate_codebooks(logits, second, self.geo.codebook)
        return pick_tokens(logits, [r.task.waveform_sampler for r in rows]) + self.geo.semantic_vocab

    def _end_windows(self) -> list[GenerationTask]:
        """Move full windows to the host; rows at their target leave, the others await a prefill."""
        done = []
        for slot in range(len(self.rows) - 1, -1, -1):
            row = self.rows[slot]
            if row.in_window < row.window_len:
                continue
            # Window end: the one device sync of the coarse stage, once per 60 tokens.
            tokens = self.window[slot, : row.window_len].tolist()
            row.coarse.extend(tokens)
            row.context = np.concatenate([row.prompt, np.asarray(tokens, dtype=np.int64)])
            row.done += row.window_len
            row.in_window = row.window_len = 0
            if row.done >= row.target:
                self.remove(slot)
                row.task.coarse = np.asarray(row.coarse[row.n_history :], dtype=np.int64)
                done.append(row.task)
        return done[::-1]


def coarse_cache_length(cfg: Any, geo: BarkGeometry) -> int:
    """Positions of a coarse cache row: the longest window prompt and its tokens, within the model's block."""
    return int(min(cfg.block_size, geo.max_coarse_input + 1 + geo.max_coarse_history + geo.window))
