"""Semantic stage: text (+ voice) -> semantic tokens, many rows at once, each stopping on its own."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from barkserve.engine import gpt
from barkserve.engine.decode import Decoder
from barkserve.engine.inputs import BarkGeometry, semantic_inputs
from barkserve.engine.kv import KVCache
from barkserve.engine.lora import RowAdapters, SlotAdapters
from barkserve.engine.sampling import force_eos_above, pick_tokens, suppress_non_semantic
from barkserve.engine.task import GenerationTask


class SemanticStage:
    """Owns the semantic model's KV cache; rows join with a prefill and leave at end-of-speech."""

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
        self.cache = KVCache(
            cfg.num_layers, max_rows, cfg.num_heads, cfg.block_size, cfg.hidden_size // cfg.num_heads,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.rows: list[GenerationTask] = []  # rows[i] lives in cache slot i
        self.last = torch.zeros(max_rows, dtype=torch.long, device=device)  # last token per slot
        # The per-token step: eager, torch.compile or CUDA graphs (engine/decode.py).
        self.decode = Decoder(model, self.cache, decode)
        # Each slot's LoRA adapter (engine/lora.py); nothing to do when the engine serves none.
        self.adapters = SlotAdapters(adapters, max_rows, device, always=decode != "eager")

    @property
    def free(self) -> int:
        return self.cache.max_rows - self.cache.n

    def prepare(self, task: GenerationTask) -> np.ndarray:
        """The row's prefill ids: [2, 256] (text, voice history)."""
        return semantic_inputs(self.geo, task.request.text_ids, task.request.voice)

    def admit(self, tasks: list[GenerationTask], ids: list[np.ndarray]) -> list[GenerationTask]:
        """Prefill new rows (text + voice history + infer token); returns rows already finished."""
        if not tasks:
            return []
        ids_t = torch.as_tensor(np.stack(ids), device=self.device)  # [m, 2, 256]
        emb = self.model.input_embeds_layer
        infer = torch.full((len(tasks), 1), self.geo.semantic_infer, dtype=torch.long, device=self.device)
        x = torch.cat([emb(ids_t[:, 0]) + emb(ids_t[:, 1]), emb(infer)], dim=1)  # [m, 257, D]
        t = x.shape[1]
        x = x + self.model.position_embeds_layer(torch.arange(t, device=self.device))[None]
        slots = [self.cache.add_row() for _ in tasks]
        for slot in slots:
            self.cache.lengths[slot] = t
        self.rows.extend(tasks)
        self.adapters.add([task.adapter for task in tasks])
        slots_t = torch.tensor(slots, device=self.device)
        lengths = torch.full((len(tasks),), t, device=self.device)
        with self.adapters.rows_at(slots):
            last = gpt.causal_prefill(self.model, x, lengths, self.cache, slots_t, padded=False)  # [m, D]
        logits = gpt.logits_at(self.model, last)  # [m, V]
        return self._take(slots, self._choose(logits, tasks))

    def step(self) -> list[GenerationTask]:
        """One token for every row; returns the rows that finished (already removed)."""
        n = self.cache.n
        if n == 0:
            return []
        with self.adapters.decode():
            hidden = self.decode(self.last, n)  # [n, 1, D]
        for slot in range(n):
            self.cache.lengths[slot] += 1
        logits = gpt.logits_at(self.model, hidden[:, 0])  # [n, V]
        return self._take(list(range(n)), self._choose(logits, self.rows))

    def remove(self, slot: int) -> GenerationTask:
        """Drop the row in `slot` (finished or cancelled); the last row moves into its place."""
        task = self.rows[slot]
        last = len(self.rows) - 1
        self.rows[slot] = self.rows[last]
        self.rows.pop()
        self.last[slot] = self.last[last]
        self.adapters.remove(slot)
        self.cache.remove_row(slot)
        return task

    def _choose(self, logits: torch.Tensor, tasks: list[GenerationTask]) -> torch.Tensor:
        """Suppress non-semantic ids, apply each row's min_eos_p, then greedy or sample. [m, V] -> [m]."""
        logits = suppress_non_semantic(logits, self.geo.eos)
        logits = force_eos_above(logits, [t.request.options.min_eos_p for t in tasks], self.geo.eos)
        return pick_tokens(logits, [t.text_sampler for t in tasks])

    def _take(self, slots: list[int], tokens: torch.Tensor) -> list[GenerationTask]:
        """Record each slot's new token; remove rows that hit end-of-speech or their token cap."""
        self.last[slots[0] : slots[-1] + 1] = tokens
        # Stopping needs the tokens on the host: the one device sync of a semantic step.
        done = []
        for slot, token in zip(slots, tokens.tolist(), strict=True):
            task = self.rows[slot]
            if token != self.geo.eos:
                task.semantic.append(token)
            if token == self.geo.eos or len(task.semantic) >= task.request.options.max_semantic_tokens:
                done.append(slot)
        return [self.remove(slot) for slot in sorted(done, reverse=True)][::-1]
