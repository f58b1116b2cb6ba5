"""Bark's GPT blocks as small functions over the checkpoint's own modules.

The modules (`att_proj`, `out_proj`, `mlp`, layer norms, embeddings, heads) are transformers'
`BarkCausalModel` / `BarkFineModel` ones, called as they are, so a quantized copy works unchanged.
Attention is `scaled_dot_product_attention`; causal stages read and write a preallocated `KVCache`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from barkserve.engine.kv import KVCache


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, T, D] -> [B, H, T, Dh]."""
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, T, Dh] -> [B, T, D]."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


def qkv(block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer norm and projection of one block. x: [B, T, D] -> three [B, H, T, Dh]."""
    attn = block.attn
    q, k, v = attn.att_proj(block.layernorm_1(x)).split(attn.embed_dim, dim=2)
    return split_heads(q, attn.num_heads), split_heads(k, attn.num_heads), split_heads(v, attn.num_heads)


def finish_block(block: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Output projection, residuals and MLP. x: [B, T, D] block input; y: [B, H, T, Dh] attention."""
    x = x + block.attn.out_proj(merge_heads(y))
    return x + block.mlp(block.layernorm_2(x))


def prefill_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """Causal mask that also hides right padding. lengths: [m] -> [m, 1, T, T] bool."""
    pos = torch.arange(t, device=lengths.device)
    causal = pos[None, :] <= pos[:, None]  # [T, T]: key j visible from query i when j <= i
    return (causal[None] & (pos[None, None, :] < lengths[:, None, None]))[:, None]


def step_mask(lengths: torch.Tensor, s: int) -> torch.Tensor:
    """Keys visible to each row's new token. lengths: [n] valid keys incl. the new one -> [n, 1, 1, S]."""
    return (torch.arange(s, device=lengths.device)[None, :] < lengths[:, None])[:, None, None]


def causal_prefill(
    model: Any, x: torch.Tensor, lengths: torch.Tensor, cache: KVCache, slots: torch.Tensor, padded: bool
) -> torch.Tensor:
    """Run a causal GPT over embedded inputs from position 0, filling the cache rows `slots`.

    x: [m, T, D] input embeddings plus positions; lengths: [m] real lengths (right padding beyond).
    Returns the final hidden state of each row's last real position, [m, D], before
    `layernorm_final`. Only that position's logits are used, so the last block runs attention, the
    output projection and the MLP for it alone (its keys and values still cover every position).
    """
    mask = prefill_mask(lengths, x.shape[1]) if padded else None
    *body, top = model.layers
    for i, block in enumerate(body):
        q, k, v = qkv(block, x)
        cache.write_prefill(i, slots, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        x = finish_block(block, x, y)
    q, k, v = qkv(top, x)
    cache.write_prefill(len(body), slots, k, v)
    rows, last = torch.arange(x.shape[0], device=x.device), lengths - 1
    q_last = q[rows, :, last][:, :, None]  # [m, H, 1, Dh]
    y = F.scaled_dot_product_attention(q_last, k, v, attn_mask=step_mask(lengths, x.shape[1]))
    return finish_block(top, x[rows, last][:, None], y)[:, 0]


def causal_step(layers: Any, x: torch.Tensor, positions: torch.Tensor, cache: KVCache, span: int) -> torch.Tensor:
    """One new token for each of the cache's n active rows, through a causal model's `layers`.

    x: [n, 1, D] embedded tokens; positions: [n] where each token goes (its row's current length);
    span: max(positions) + 1, how many cache positions attention reads. Returns hidden [n, 1, D].
    (The blocks, not the model: stages whose blocks have the same shapes share one compiled step.)
    """
    n = x.shape[0]
    mask = step_mask(positions + 1, span)
    for i, block in enumerate(layers):
        q, k, v = qkv(block, x)
        cache.write_step(i, positions, k, v)
        keys, values = cache.view(i, n, span)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = finish_block(block, x, y)
    return x


DecodeStep = Callable[[Any, torch.Tensor, torch.Tensor, KVCache, int], torch.Tensor]


def compiled_step(cache: KVCache) -> DecodeStep:
    """`causal_step` under `torch.compile`, for fixed shapes: every slot over the whole `cache`.

    Fixed shapes compile once per stage. On CUDA the step runs as CUDA graphs ("reduce-overhead");
    the KV cache is marked as a static address, so the graphs write it in place. Idle slots are
    computed too (their outputs are dropped).
    """
    cuda = cache.k.device.type == "cuda"
    if cuda:
        torch._dynamo.mark_static_address(cache.k)
        torch._dynamo.mark_static_address(cache.v)
    return torch.compile(causal_step, dynamic=False, mode="reduce-overhead" if cuda else None)


def bidirectional(model: Any, x: torch.Tensor, keep_from: int = 0) -> torch.Tensor:
    """The fine model's non-causal pass. x: [m, T, D] -> final hidden [m, T - keep_from, D] after
    `layernorm_final`, for positions keep_from.. only: the last block runs attention, the output
    projection and the MLP for those positions alone (keys and values still cover every position)."""
    *body, top = model.layers
    for block in body:
        q, k, v = qkv(block, x)
        x = finish_block(block, x, F.scaled_dot_product_attention(q, k, v))
    q, k, v = qkv(top, x)
    y = F.scaled_dot_product_attention(q[:, :, keep_from:], k, v)
    return model.layernorm_final(finish_block(top, x[:, keep_from:], y))


def embed(model: Any, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Token plus position embeddings of a causal model. ids, positions: [B, T] -> [B, T, D]."""
    return model.input_embeds_layer(ids) + model.position_embeds_layer(positions)


def logits_at(model: Any, hidden: torch.Tensor, first: int = 0) -> torch.Tensor:
    """lm_head on the positions whose logits are used, for vocabulary ids >= `first` only.

    hidden: [n, D] -> [n, V - first] float32. A plain Linear head is sliced (the coarse stage never
    picks ids below 10,000, so those rows of its 12,096-row head are never read); any other head
    (e.g. int8) runs whole.
    """
    hidden = model.layernorm_final(hidden)
    head = model.lm_head
    if first and getattr(head, "first_row", 0) == first:  # a packed head that starts at `first`
        return head(hidden).float()
    if first and isinstance(head, torch.nn.Linear) and head.bias is None:
        return F.linear(hidden, head.weight[first:]).float()
    return head(hidden)[..., first:].float()
