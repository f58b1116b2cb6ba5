"""Training and evaluating quantizers on aligned (HuBERT features, semantic tokens) pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from barkserve.cloning.quantizer import KMeansQuantizer, Quantizer, QuantizerInfo
from barkserve.errors import DatasetError

# One utterance: features [T, D] float32 and one token per feature frame [T] int64.
Pair = tuple[torch.Tensor, torch.Tensor]
# Bias given to tokens absent from the training set, so that argmax never picks them.
UNSEEN_BIAS = -1e4


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss (cross-entropy; k-means: mean squared distance) and accuracy."""

    epoch: int
    loss: float
    accuracy: float  # token accuracy on the held-out split


@dataclass(frozen=True)
class TrainOptions:
    """How to train; defaults follow the community recipe (Adam, cross-entropy)."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 16  # utterances per step (lstm) or 256 x that many frames (linear)
    seed: int = 0
    device: str = "cpu"  # where the quantizer trains ("cuda" for real datasets)


def stretch(tokens: np.ndarray, n_out: int) -> np.ndarray:
    """Resample a token sequence to `n_out` steps, each taking the token at the same relative time.

    Features come at 50 per second and semantic tokens at 49.9; both cover the same audio, so a
    proportional map aligns them in both directions (tokens -> frames to train, frames -> tokens to
    clone).
    """
    n_in = len(tokens)
    if n_in == 0 or n_out <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)
    return np.asarray(tokens, dtype=np.int64)[idx]


def align(features: torch.Tensor, tokens: np.ndarray) -> Pair:
    """Pair each feature frame [T, D] with the semantic token sounding at that time -> ([T, D], [T])."""
    if len(tokens) == 0 or features.shape[0] == 0:
        raise DatasetError("an utterance has no tokens or no features; remove it from the dataset")
    labels = torch.from_numpy(stretch(tokens, features.shape[0]))
    return features.float(), labels


def split(pairs: Sequence[Pair], held_out: float = 0.1, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """A seeded random split into training and held-out utterances (at least one of each)."""
    if len(pairs) < 2:
        raise DatasetError(f"need at least 2 utterances to hold some out; got {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_held = min(len(pairs) - 1, max(1, round(len(pairs) * held_out)))
    return [pairs[i] for i in order[n_held:]], [pairs[i] for i in order[:n_held]]


def accuracy(quantizer: Quantizer, pairs: Sequence[Pair]) -> float:
    """Fraction of feature frames whose predicted token equals the aligned token."""
    right = total = 0
    for features, labels in pairs:
        predicted = quantizer.predict(features)
        right += int((predicted == labels.numpy()).sum())
        total += len(labels)
    return right / max(total, 1)


def train_quantizer(
    train: Sequence[Pair],
    held: Sequence[Pair],
    info: QuantizerInfo,
    options: TrainOptions | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> tuple[Quantizer, list[EpochStats]]:
    """Train a quantizer of `info.method` and report held-out accuracy after every epoch.

    Args:
        train: Aligned training utterances.
        held: Aligned held-out utterances (accuracy is measured on these).
        info: Method and feature metadata stored in the checkpoint.
        options: Epochs, learning rate, batch size, seed.
        on_epoch: Called with each epoch's stats (the CLI prints them).

    Returns:
        The trained quantizer (metrics filled in) and the per-epoch history.
    """
    options = options or TrainOptions()
    if not train:
        raise DatasetError("no training utterances")
    torch.manual_seed(options.seed)
    if info.method == "kmeans":
        quantizer, history = _train_kmeans(train, held, info, options, on_epoch)
    else:
        quantizer, history = _train_gradient(train, held, info, options, on_epoch)
    quantizer.metrics = {
        "held_out_accuracy": history[-1].accuracy,
        "epochs": len(history),
        "train_utterances": len(train),
        "held_out_utterances": len(held),
    }
    return quantizer, history


def _train_gradient(
    train: Sequence[Pair],
    held: Sequence[Pair],
    info: QuantizerInfo,
    options: TrainOptions,
    on_epoch: Callable[[EpochStats], None] | None,
) -> tuple[Quantizer, list[EpochStats]]:
    """Adam on cross-entropy over the tokens present in `train` (lstm, linear)."""
    quantizer = Quantizer.create(info)
    module = quantizer.module.to(options.device)
    seen = torch.unique(torch.cat([t for _, t in train])).to(options.device)  # [K]
    # The loss only sees the classes present: Adam would move the rows of absent classes at full
    # step size from their tiny gradients, and an LSTM then stalls at the marginal distribution.
    remap = torch.full((info.n_tokens,), -100, dtype=torch.long, device=options.device)
    remap[seen] = torch.arange(len(seen), device=options.device)
    optimizer = torch.optim.Adam(module.parameters(), lr=options.lr)
    history = []
    for epoch in range(1, options.epochs + 1):
        loss = _gradient_epoch(module, optimizer, train, seen, remap, options, epoch)
        stats = EpochStats(epoch, loss, accuracy(quantizer, held))
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
    return quantizer, history


def _silence_unseen(module: nn.Module, seen: torch.Tensor) -> None:
    """Make the classifier never pick a token it was not trained on."""
    fc = module.fc
    assert isinstance(fc, nn.Linear)
    with torch.no_grad():
        keep = torch.zeros(fc.out_features, dtype=torch.bool, device=fc.bias.device)
        keep[seen] = True
        fc.bias[~keep] = UNSEEN_BIAS


def _gradient_epoch(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Sequence[Pair],
    seen: torch.Tensor,
    remap: torch.Tensor,
    options: TrainOptions,
    epoch: int,
) -> float:
    """One pass over utterance batches; returns the mean loss."""
    module.train()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(options.seed + epoch))
    device = options.device
    losses = []
    for start in range(0, len(train), options.batch_size):
        batch = [train[int(i)] for i in order[start : start + options.batch_size]]
        x = nn.utils.rnn.pad_sequence([f.to(device) for f, _ in batch], batch_first=True)  # [B, T, D]
        y = nn.utils.rnn.pad_sequence([remap[t.to(device)] for _, t in batch], batch_first=True, padding_value=-100)
        logits = module(x)[..., seen]  # [B, T, K]
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())  # kept on the device: no sync per step
    module.eval()
    _silence_unseen(module, seen)
    return float(torch.stack(losses).mean())


def _train_kmeans(
    train: Sequence[Pair],
    held: Sequence[Pair],
    info: QuantizerInfo,
    options: TrainOptions,
    on_epoch: Callable[[EpochStats], None] | None,
) -> tuple[Quantizer, list[EpochStats]]:
    """Lloyd's k-means from per-token mean features; each centroid then takes its cluster's majority token."""
    x = torch.cat([f for f, _ in train]).float().to(options.device)  # [N, D]
    y = torch.cat([t for _, t in train]).to(options.device)  # [N]
    seen = torch.unique(y)  # tokens present; absent ones get no centroid
    remap = torch.full((info.n_tokens,), -1, dtype=torch.long, device=x.device)
    remap[seen] = torch.arange(len(seen), device=x.device)
    info = replace(info, n_centroids=len(seen))
    quantizer = Quantizer.create(info)
    module = quantizer.module.to(options.device)
    assert isinstance(module, KMeansQuantizer)
    module.centroids.copy_(_cluster_means(x, remap[y], len(seen), module.centroids))
    module.labels.copy_(seen)
    history = []
    for epoch in range(1, options.epochs + 1):
        cluster = module.assign(x)  # [N]
        loss = float(((x - module.centroids[cluster]) ** 2).sum(1).mean())
        module.centroids.copy_(_cluster_means(x, cluster, len(seen), module.centroids))
        module.labels.copy_(_majority(cluster, y, module.labels))
        stats = EpochStats(epoch, loss, accuracy(quantizer, held))
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
    return quantizer, history


def _cluster_means(x: torch.Tensor, cluster: torch.Tensor, k: int, previous: torch.Tensor) -> torch.Tensor:
    """Mean of x per cluster [K, D]; an empty cluster keeps its previous centroid."""
    sums = torch.zeros(k, x.shape[1], device=x.device).index_add_(0, cluster, x)
    counts = torch.bincount(cluster, minlength=k).unsqueeze(1).float()
    return torch.where(counts > 0, sums / counts.clamp(min=1), previous)


def _majority(cluster: torch.Tensor, tokens: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Most frequent token of each cluster [K]; an empty cluster keeps its previous label."""
    n_tok = int(tokens.max()) + 1
    pairs, counts = torch.unique(cluster * n_tok + tokens, return_counts=True)
    owner = pairs // n_tok
    best = torch.zeros(len(previous), dtype=torch.long, device=counts.device).scatter_reduce(0, owner, counts, "amax")
    winners = counts == best[owner]  # ties: any winner is as good
    labels = previous.clone()
    labels[owner[winners]] = pairs[winners] % n_tok
    return labels
