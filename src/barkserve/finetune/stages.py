"""Teacher-forced inputs and losses of Bark's three GPTs, laid out as their `generate` lays out prompts.

semantic: [text ids + offset (256, padded) summed with an empty history, the infer token, the clip's
          semantic tokens] -> each semantic token and the end-of-speech token.
coarse:   [a window of <= 256 semantic tokens (padded), the infer token, the aligned coarse tokens
          (2 codebooks interleaved, offset into the coarse vocabulary)] -> each coarse token. This is
          the first sliding window of generation, at a random place in the clip.
fine:     generation's first window: <= 1,024 frames of all 8 codebooks (padded with the pad code);
          for codebook k in 2..7 the codebooks below k are given, k is the pad code, and the padding
          after the clip holds the model's own argmax of codebooks 2..k-1, as generation fills it
          -> codebook k (one k per training batch, all six for held-out scores).

Losses are summed token cross-entropies with their token counts, so batches and held-out sets of any
size average the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from barkserve.engine.inputs import BarkGeometry, coarse_length, coarse_window, semantic_inputs

STAGES = ("semantic", "coarse", "fine")
# The BarkModel attribute of each stage.
SUBMODULES = {"semantic": "semantic", "coarse": "coarse_acoustics", "fine": "fine_acoustics"}
IGNORE = -100


def semantic_batch(geo: BarkGeometry, items: Sequence[Any], block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prefix [B, 2, 256] text and history ids, targets [B, L + 1] with end-of-speech, IGNORE padded)."""
    prefix = torch.as_tensor(np.stack([semantic_inputs(geo, item.text_ids, None) for item in items]))
    longest = block - geo.max_text - 1  # the infer token takes one position
    targets = [np.asarray(item.semantic[:longest], dtype=np.int64) for item in items]
    labels = torch.full((len(items), max(len(t) for t in targets) + 1), IGNORE, dtype=torch.long)
    for row, target in enumerate(targets):
        labels[row, : len(target)] = torch.as_tensor(target)
        labels[row, len(target)] = geo.eos
    return prefix, labels


def semantic_logits(model: Any, geo: BarkGeometry, items: Sequence[Any], device: Any) -> tuple[torch.Tensor, ...]:
    """(logits [B, L + 1, V] at the infer token and each target, labels [B, L + 1])."""
    stage = model.semantic
    prefix, labels = semantic_batch(geo, items, stage.config.block_size)
    prefix, labels = prefix.to(device), labels.to(device)
    tokens = labels[:, :-1].clamp(min=0)  # teacher forcing; padded positions only feed padded labels
    embed = stage.input_embeds_layer
    infer = torch.full((len(items), 1), geo.semantic_infer, dtype=torch.long, device=device)
    x = torch.cat([embed(prefix[:, 0]) + embed(prefix[:, 1]), embed(infer), embed(tokens)], dim=1)  # [B, 257+L, H]
    return stage(inputs_embeds=x, use_cache=False).logits[:, geo.max_text :], labels


def semantic_loss(model: Any, geo: BarkGeometry, items: Sequence[Any], device: Any) -> tuple[torch.Tensor, int]:
    return _cross_entropy(*semantic_logits(model, geo, items, device))


def coarse_example(geo: BarkGeometry, item: Any, start: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """One window: (input ids [257 + 2F - 1], targets [2F]) from semantic token `start` on."""
    semantic = np.asarray(item.semantic[start : start + geo.max_coarse_input], dtype=np.int64)
    first = round(start * geo.coarse_rate_hz / geo.semantic_rate_hz)
    room = (block - geo.max_coarse_input) // geo.n_coarse  # frames that fit after the prefix
    frames = min(coarse_length(geo, len(semantic)) // geo.n_coarse, item.codes.shape[1] - first, room)
    codes = np.asarray(item.codes[: geo.n_coarse, first : first + frames], dtype=np.int64).copy()  # [2, F]
    for n in range(1, geo.n_coarse):
        codes[n] += geo.codebook * n
    targets = codes.T.reshape(-1) + geo.semantic_vocab  # interleaved: c0, c1, c0, c1, ...
    prefix = coarse_window(geo, semantic, 0, np.zeros(0, dtype=np.int64), 0)  # [256 semantic, infer]
    return np.concatenate([prefix, targets[:-1]]), targets


def coarse_logits(
    model: Any, geo: BarkGeometry, items: Sequence[Any], starts: Sequence[int], device: Any
) -> tuple[torch.Tensor, ...]:
    """(logits [B, 2F, V] at the infer token and each coarse input, labels [B, 2F])."""
    stage = model.coarse_acoustics
    examples = [coarse_example(geo, item, s, stage.config.block_size) for item, s in zip(items, starts, strict=True)]
    width = max(len(x) for x, _ in examples)
    ids = torch.full((len(items), width), geo.coarse_pad, dtype=torch.long)
    labels = torch.full((len(items), width - geo.max_coarse_input), IGNORE, dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)] = torch.as_tensor(x)
        labels[row, : len(y)] = torch.as_tensor(y)
    logits = stage(input_ids=ids.to(device), use_cache=False).logits[:, geo.max_coarse_input :]  # [B, 2F, V]
    return logits, labels.to(device)


def coarse_loss(
    model: Any, geo: BarkGeometry, items: Sequence[Any], starts: Sequence[int], device: Any
) -> tuple[torch.Tensor, int]:
    return _cross_entropy(*coarse_logits(model, geo, items, starts, device))


def fine_batch(geo: BarkGeometry, items: Sequence[Any], starts: Sequence[int]) -> torch.Tensor:
    """[B, 1024, 8] codes of each window, padded with the pad code (the codebook size) as generation pads."""
    codes = torch.full((len(items), geo.max_fine_input, geo.n_fine), geo.codebook, dtype=torch.long)
    for row, (item, start) in enumerate(zip(items, starts, strict=True)):
        window = torch.as_tensor(np.asarray(item.codes[:, start : start + geo.max_fine_input]).T)  # [F, 8]
        codes[row, : len(window)] = window
    return codes


def fine_logits(
    model: Any, geo: BarkGeometry, codes: torch.Tensor, codebooks: Sequence[int]
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(k, logits [B, 1024, V] of codebook k, labels [B, 1024]) for each k in `codebooks`, in order.

    codes: [B, 1024, 8] from `fine_batch`. The input of codebook k is generation's first window:
    the window's codebooks below k (all 1,024 frames see each other), codebook k still the pad
    code. Generation fills every frame of a codebook, the padding after the clip included, with its
    argmax before it predicts the next one (the model reads codebooks 0..k summed), so the padding's
    codebooks n_coarse..k-1 hold the model's own argmax here too: each codebook below the highest
    asked for is predicted once, without gradients where it is not asked for.
    """
    given = codes.clone()
    given[:, :, geo.n_coarse :] = geo.codebook  # nothing predicted yet
    past_clip = codes[:, :, 0] == geo.codebook  # padding frames (the coarse codes are padded there)
    wanted = set(codebooks)
    for k in range(geo.n_coarse, max(wanted, default=geo.n_coarse - 1) + 1):
        with contextlib.nullcontext() if k in wanted else torch.no_grad():
            logits = model.fine_acoustics(codebook_idx=k, input_ids=given).logits
        if k in wanted:
            labels = codes[:, :, k].masked_fill(past_clip, IGNORE)
            yield k, logits, labels
        guess = logits[:, :, : geo.codebook].detach().argmax(-1)
        given = given.clone()  # the embedding of the forward above keeps these ids for its backward
        given[:, :, k] = torch.where(past_clip, guess, codes[:, :, k])


def fine_loss(
    model: Any, geo: BarkGeometry, items: Sequence[Any], starts: Sequence[int], device: Any, codebooks: Sequence[int]
) -> tuple[torch.Tensor, int]:
    codes = fine_batch(geo, items, starts).to(device)
    total, count = codes.new_zeros((), dtype=torch.float32), 0
    for _, logits, labels in fine_logits(model, geo, codes, codebooks):
        loss, n = _cross_entropy(logits, labels)
        total, count = total + loss, count + n
    return total, count


def window_starts(stage: str, geo: BarkGeometry, items: Sequence[Any], rng: np.random.Generator | None) -> list[int]:
    """Where each item's window begins: random in training, 0 for held-out scoring (rng None)."""
    if stage == "semantic" or rng is None:
        return [0] * len(items)
    if stage == "coarse":
        spans = [len(item.semantic) - geo.max_coarse_input for item in items]
    else:
        spans = [item.codes.shape[1] - geo.max_fine_input for item in items]
    return [int(rng.integers(0, span + 1)) if span > 0 else 0 for span in spans]


def stage_loss(
    model: Any, geo: BarkGeometry, stage: str, items: Sequence[Any], rng: np.random.Generator | None, device: Any
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of one stage on `items` and its token count."""
    if stage == "semantic":
        return semantic_loss(model, geo, items, device)
    starts = window_starts(stage, geo, items, rng)
    if stage == "coarse":
        return coarse_loss(model, geo, items, starts, device)
    # Training predicts one codebook per batch, drawn at random (a sixth of the cost of all six);
    # held-out scoring predicts all of them.
    books = range(geo.n_coarse, geo.n_fine)
    return fine_loss(model, geo, items, starts, device, [int(rng.choice(books))] if rng is not None else books)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum")
    # The count is known from the labels on the CPU side of the batch; one sync per stage is fine here.
    return loss, int((labels != IGNORE).sum())
