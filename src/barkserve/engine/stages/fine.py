"""Fine stage: 2 -> 8 codebooks, batched across requests, in the reference's overlapping windows."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from barkserve.engine import gpt
from barkserve.engine.inputs import BarkGeometry, FineRow
from barkserve.engine.lora import RowAdapters
from barkserve.engine.sampling import Sampler, pick_tokens


def fine_embed(model: Any, codes: torch.Tensor, codebook: int) -> torch.Tensor:
    """Sum of the embeddings of codebooks 0..codebook, summed as the reference does. codes: [m, T, 8]."""
    per_book = [emb(codes[:, :, i]).unsqueeze(-1) for i, emb in enumerate(model.input_embeds_layers)]
    x = torch.cat(per_book, dim=-1)[:, :, :, : codebook + 1].sum(dim=-1)  # [m, T, D]
    return x + model.position_embeds_layer(torch.arange(codes.shape[1], device=codes.device))[None]


def fill_codebook(
    model: Any, geo: BarkGeometry, buf: torch.Tensor, fills: list[int], codebook: int, samplers: list[Sampler]
) -> None:
    """Predict one codebook of each window in `buf` [m, 1024, 8] from position fills[i] on, in place."""
    first = min(fills)  # logits are used from here on
    hidden = gpt.bidirectional(model, fine_embed(model, buf, codebook), keep_from=first)  # [m, 1024 - first, D]
    head = model.lm_heads[codebook - model.config.n_codes_given]
    for i, (fill, sampler) in enumerate(zip(fills, samplers, strict=True)):
        logits = head(hidden[i, fill - first :])[:, : geo.codebook].float()  # [P, 1024]: used positions only
        buf[i, fill:, codebook] = pick_tokens(logits[None], [sampler])[0]  # [P]


def run_fine(
    model: Any,
    geo: BarkGeometry,
    rows: list[FineRow],
    samplers: list[Sampler],
    max_batch: int,
    adapters: RowAdapters | None = None,
    entries: list[int] | None = None,
) -> None:
    """Fill codebooks 2..7 of every row in place, rows[i] with samplers[i] and LoRA entry entries[i].

    Window k of every row runs after window k-1 (windows overlap); rows with a k-th window share
    one forward pass per codebook, up to `max_batch` at a time.
    """
    size = geo.max_fine_input
    for k in range(max((len(r.windows) for r in rows), default=0)):
        active = [i for i, r in enumerate(rows) if len(r.windows) > k]
        for chunk in (active[j : j + max_batch] for j in range(0, len(active), max_batch)):
            starts = [rows[i].windows[k][0] for i in chunk]
            fills = [rows[i].windows[k][1] for i in chunk]
            buf = torch.stack([rows[i].codes[s : s + size] for i, s in zip(chunk, starts, strict=True)])
            with _adapters_of(adapters, [entries[i] for i in chunk] if entries else [], buf.device):
                for codebook in range(geo.n_coarse, geo.n_fine):
                    fill_codebook(model, geo, buf, fills, codebook, [samplers[i] for i in chunk])
            for j, (i, s) in enumerate(zip(chunk, starts, strict=True)):
                rows[i].codes[s : s + size] = buf[j]


def _adapters_of(adapters: RowAdapters | None, entries: list[int], device: Any) -> Any:
    """The LoRA context of one batch of windows: the base layers alone when no row has an adapter."""
    if adapters is None or not any(entries):
        return contextlib.nullcontext()
    return adapters.use(torch.tensor(entries, device=device))
