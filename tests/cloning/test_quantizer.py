"""Quantizers learn, keep their metadata, and read the community LSTM checkpoint layout."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cloning_helpers import synthetic_pairs

from barkserve.cloning.quantizer import Quantizer, QuantizerInfo, load_quantizer
from barkserve.cloning.train import TrainOptions, accuracy, align, split, stretch, train_quantizer
from barkserve.errors import QuantizerError

# Method, options and the accuracy each must reach on held-out utterances. Chance is 1/64 (64 tokens
# in use, uniformly); measured: linear 0.97, k-means 0.997, lstm 0.76 (seeded, 2 CPU threads).
LEARNING = [
    ("linear", TrainOptions(epochs=5, lr=2e-2, batch_size=4), 0.85),
    ("kmeans", TrainOptions(epochs=3), 0.9),
    ("lstm", TrainOptions(epochs=6, lr=1e-2, batch_size=4), 0.5),
]


@pytest.fixture(scope="module")
def synthetic() -> tuple[list, list]:
    pairs, _ = synthetic_pairs(n_utterances=30, dim=32, noise=1.0)
    return split(pairs, held_out=0.2, seed=0)


def _info(method: str, **extra: object) -> QuantizerInfo:
    return QuantizerInfo(method=method, hubert="tiny", layer=2, input_size=32, hidden_size=64, **extra)


@pytest.mark.parametrize(("method", "options", "target"), LEARNING, ids=[m for m, _, _ in LEARNING])
def test_training_learns_far_above_chance(synthetic: tuple, method: str, options: TrainOptions, target: float) -> None:
    train, held = synthetic
    chance = 1 / 64
    if method != "kmeans":
        torch.manual_seed(0)
        assert accuracy(Quantizer.create(_info(method)), held) < 5 * chance  # untrained: no better than chance
    quantizer, history = train_quantizer(train, held, _info(method), options)
    print(method, [(round(s.loss, 3), round(s.accuracy, 3)) for s in history])
    assert len(history) == options.epochs
    assert history[-1].accuracy >= target > 30 * chance
    assert history[-1].loss < history[0].loss  # k-means: within-cluster squared distance
    assert quantizer.metrics["held_out_accuracy"] == history[-1].accuracy
    # Predictions are tokens of the 64 in use, never one it has not seen.
    predicted = quantizer.predict(held[0][0])
    used = torch.unique(torch.cat([t for _, t in train])).numpy()
    assert np.isin(predicted, used).all()


def test_kmeans_starts_from_per_token_means(synthetic: tuple) -> None:
    train, held = synthetic
    quantizer, _ = train_quantizer(train, held, _info("kmeans"), TrainOptions(epochs=1))
    x = torch.cat([f for f, _ in train])
    y = torch.cat([t for _, t in train])
    centroids = quantizer.module.centroids
    labels = quantizer.module.labels
    assert len(labels) == len(torch.unique(y))
    # After one Lloyd step each centroid is still within noise of its token's mean feature.
    for k in range(0, len(labels), 16):
        mean = x[y == labels[k]].mean(0)
        assert torch.linalg.norm(centroids[k] - mean) < 0.5 * torch.linalg.norm(mean)


def test_checkpoint_round_trip_keeps_predictions_and_metadata(synthetic: tuple, tmp_path: Path) -> None:
    train, held = synthetic
    for method in ("linear", "kmeans", "lstm"):
        quantizer, _ = train_quantizer(train, held, _info(method), TrainOptions(epochs=1, batch_size=8))
        loaded = load_quantizer(quantizer.save(tmp_path / f"{method}.pt"))
        assert loaded.info == quantizer.info
        assert loaded.metrics == quantizer.metrics
        assert np.array_equal(loaded.predict(held[0][0]), quantizer.predict(held[0][0]))
        with pytest.raises(QuantizerError, match="not 'other'"):
            load_quantizer(tmp_path / f"{method}.pt", method="other")


def test_a_mismatched_hubert_or_layer_is_an_error() -> None:
    quantizer = Quantizer.create(_info("linear"))
    quantizer.check_features("tiny", 2, 32)
    for hubert, layer, width, words in [("other", 2, 32, "HuBERT 'tiny'"), ("tiny", 9, 32, "layer 2"),
                                        ("tiny", 2, 768, "32-wide")]:  # fmt: skip
        with pytest.raises(QuantizerError, match=words):
            quantizer.check_features(hubert, layer, width)


def _write_community(path: Path, module: torch.nn.Module, info: dict | None) -> Path:
    """Save like the community tool: torch.save(state_dict), then a `<archive>/.info` JSON member."""
    torch.save(module.state_dict(), path)
    if info is not None:
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(f"{path.stem}/.info", json.dumps(info))
    return path


@pytest.mark.parametrize("version", [0, 1])
def test_community_lstm_checkpoint_loads(tmp_path: Path, version: int) -> None:
    # A small stand-in with the community's parameter names: lstm (2 layers), [intermediate], fc.
    torch.manual_seed(version)
    module = torch.nn.Module()
    module.lstm = torch.nn.LSTM(32, 24, 2, batch_first=True)
    if version == 1:
        module.intermediate = torch.nn.Linear(24, 4096)
    # Version 1 with fewer classes keeps its 4096-wide classifier small for the test.
    n_out = 500 if version else 10_000
    module.fc = torch.nn.Linear(4096 if version else 24, n_out)
    info = {"input_size": 32, "hidden_size": 24, "output_size": n_out, "version": version}
    loaded = load_quantizer(_write_community(tmp_path / "community.pth", module, info))
    assert (loaded.info.method, loaded.info.source, loaded.info.version) == ("lstm", "community", version)
    assert (loaded.info.input_size, loaded.info.hidden_size, loaded.info.layer) == (32, 24, 9)
    assert loaded.info.n_tokens == n_out
    features = torch.randn(50, 32)
    # The community model: LSTM -> [intermediate] -> fc -> log-softmax -> argmax per frame.
    with torch.no_grad():
        h, _ = module.lstm(features[None])
        if version == 1:
            h = module.intermediate(h)
        expected = torch.log_softmax(module.fc(h), -1).argmax(-1)[0].numpy()
    assert np.array_equal(loaded.predict(features), expected)


def test_oldest_community_file_without_info_and_bad_files(tmp_path: Path) -> None:
    module = torch.nn.Module()
    module.lstm = torch.nn.LSTM(16, 8, 2, batch_first=True)
    module.fc = torch.nn.Linear(8, 10_000)
    old = load_quantizer(_write_community(tmp_path / "old.pth", module, None))
    assert (old.info.input_size, old.info.hidden_size, old.info.version) == (16, 8, 0)
    lying = _write_community(tmp_path / "lying.pth", module, {"input_size": 768, "hidden_size": 1024,
                                                               "output_size": 10_000, "version": 0})  # fmt: skip
    with pytest.raises(QuantizerError, match=r"\.info says"):
        load_quantizer(lying)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(QuantizerError, match="not a readable"):
        load_quantizer(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(QuantizerError, match="neither"):
        load_quantizer(tmp_path / "other.pt")


def test_alignment_maps_50_hz_frames_to_49_9_hz_tokens() -> None:
    tokens = np.arange(499)  # 10 s of semantic tokens
    labels = stretch(tokens, 500)  # 10 s of HuBERT frames
    assert labels[0] == 0 and labels[-1] == 498
    assert np.all(np.diff(labels) >= 0) and np.all(np.diff(labels) <= 1)
    # And back: frames -> tokens returns the original sequence exactly.
    assert np.array_equal(stretch(labels, 499), tokens)
    features, frame_tokens = align(torch.zeros(500, 4), tokens)
    assert features.shape == (500, 4) and np.array_equal(frame_tokens.numpy(), labels)
