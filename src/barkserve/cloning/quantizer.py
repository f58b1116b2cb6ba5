"""Quantizers from HuBERT features to Bark semantic tokens: LSTM, linear, k-means; checkpoints.

Our checkpoints are a `torch.save` dict: {"format": "barkserve-quantizer", "format_version": 1,
"info": {method, hubert, layer, input_size, n_tokens, hidden_size, version}, "state_dict", "metrics"}.
The community LSTM checkpoint (github.com/gitmylo/bark-voice-cloning-HuBERT-quantizer) is a bare
`state_dict` of `lstm` (2 layers, batch_first), optional `intermediate` (version 1) and `fc`, saved
with `torch.save`, plus a JSON member `<archive>/.info` added to the zip ({input_size, hidden_size,
output_size, version}; absent in the oldest files, which mean 768 -> 1024 -> 10,000, version 0).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from barkserve.bark import SEMANTIC_VOCAB
from barkserve.cloning.hubert import DEFAULT_HUBERT, DEFAULT_LAYER
from barkserve.errors import QuantizerError

METHODS = ("lstm", "linear", "kmeans")
N_TOKENS = SEMANTIC_VOCAB  # the quantizer predicts Bark's semantic tokens
FORMAT = "barkserve-quantizer"
FORMAT_VERSION = 1
# The community's version-1 model puts a 4096-wide linear layer between the LSTM and the classifier.
INTERMEDIATE_SIZE = 4096
_COMMUNITY_KEYS = ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "fc.weight", "fc.bias")


@dataclass(frozen=True)
class QuantizerInfo:
    """What a quantizer is and which HuBERT features it reads."""

    method: str  # lstm | linear | kmeans
    hubert: str = DEFAULT_HUBERT  # hub id or folder of the HubertModel
    layer: int = DEFAULT_LAYER  # hidden_states index read from HuBERT
    input_size: int = 768  # HuBERT hidden size
    n_tokens: int = N_TOKENS
    hidden_size: int = 1024  # LSTM width (lstm only)
    version: int = 0  # community LSTM variant; 1 adds the intermediate layer
    n_centroids: int = 0  # k-means only
    source: str = "barkserve"  # barkserve | community

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizerError(f"quantizer method must be one of {METHODS}; got {self.method!r}")


class LstmQuantizer(nn.Module):
    """2-layer LSTM over the feature sequence, then a linear classifier (the community recipe)."""

    def __init__(self, info: QuantizerInfo) -> None:
        super().__init__()
        self.lstm = nn.LSTM(info.input_size, info.hidden_size, 2, batch_first=True)
        width = info.hidden_size
        if info.version == 1:
            self.intermediate = nn.Linear(info.hidden_size, INTERMEDIATE_SIZE)
            width = INTERMEDIATE_SIZE
        self.fc = nn.Linear(width, info.n_tokens)
        self.version = info.version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)  # x: [B, T, D] -> h: [B, T, H]
        if self.version == 1:
            h = self.intermediate(h)
        return self.fc(h)  # [B, T, V] logits


class LinearQuantizer(nn.Module):
    """One linear projection per frame: the cheapest learned baseline."""

    def __init__(self, info: QuantizerInfo) -> None:
        super().__init__()
        self.fc = nn.Linear(info.input_size, info.n_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # [B, T, D] -> [B, T, V]


class KMeansQuantizer(nn.Module):
    """Nearest centroid, each centroid labelled with a semantic token."""

    centroids: torch.Tensor
    labels: torch.Tensor

    def __init__(self, info: QuantizerInfo) -> None:
        super().__init__()
        self.register_buffer("centroids", torch.zeros(info.n_centroids, info.input_size))  # [K, D]
        self.register_buffer("labels", torch.zeros(info.n_centroids, dtype=torch.long))  # [K]

    def assign(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Index of the nearest centroid of each row of x: [N, D] -> [N]."""
        c = self.centroids
        c_sq = (c * c).sum(1)  # [K]
        # Chunks keep the [chunk, K] distance matrix small with 10,000 centroids.
        parts = [(c_sq - 2 * part @ c.T).argmin(1) for part in x.split(chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("k-means has no logits; use Quantizer.predict")


_MODULES: dict[str, type[nn.Module]] = {"lstm": LstmQuantizer, "linear": LinearQuantizer, "kmeans": KMeansQuantizer}


@dataclass(eq=False)
class Quantizer:
    """A quantizer module with its metadata; `predict` maps features to tokens."""

    info: QuantizerInfo
    module: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, info: QuantizerInfo) -> Quantizer:
        return cls(info, _MODULES[info.method](info))

    def predict(self, features: torch.Tensor) -> np.ndarray:
        """Semantic tokens (T,) int64 of one utterance's features (T, D), one per feature frame."""
        self.module.eval()
        param = next(iter(self.module.state_dict().values()))
        with torch.inference_mode():
            x = features.to(param.device, torch.float32)  # [T, D]
            if isinstance(self.module, KMeansQuantizer):
                tokens = self.module.labels[self.module.assign(x)]
            else:
                tokens = self.module(x[None])[0].argmax(-1)  # [T, V] -> [T]
            return tokens.cpu().numpy().astype(np.int64)

    def save(self, path: str | Path) -> Path:
        """Write our checkpoint format (metadata + weights)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        torch.save(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "info": asdict(self.info),
                "state_dict": state,
                "metrics": self.metrics,
            },
            path,
        )
        return path

    def check_features(self, hubert: str, layer: int, hidden_size: int) -> None:
        """Raise `QuantizerError` unless this quantizer was trained on these HuBERT features."""
        problems = []
        if not _same_source(self.info.hubert, hubert):
            problems.append(f"HuBERT {self.info.hubert!r}, not {hubert!r}")
        if self.info.layer != layer:
            problems.append(f"layer {self.info.layer}, not {layer}")
        if self.info.input_size != hidden_size:
            problems.append(f"{self.info.input_size}-wide features, not {hidden_size}")
        if problems:
            raise QuantizerError(
                f"the quantizer was trained on {'; '.join(problems)}: configure the HuBERT it was trained "
                "with, or train a quantizer for this HuBERT (barkserve quantizer train)"
            )


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def load_quantizer(path: str | Path, method: str | None = None) -> Quantizer:
    """Load our checkpoint or a community LSTM checkpoint, on the CPU.

    Args:
        path: The checkpoint file.
        method: If given, the method the caller expects; another one is an error.

    Returns:
        The quantizer, in eval mode.

    Raises:
        QuantizerError: Unreadable, unknown layout, or not of `method`.
    """
    path = Path(path)
    try:
        # weights_only: a checkpoint from the internet must not run code when loaded.
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError) as exc:
        raise QuantizerError(f"{path}: not a readable quantizer checkpoint ({exc})") from exc
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        quantizer = _from_ours(path, raw)
    elif isinstance(raw, dict) and all(k in raw for k in _COMMUNITY_KEYS):
        quantizer = _from_community(path, raw)
    else:
        raise QuantizerError(f"{path}: neither a barkserve quantizer nor a community LSTM quantizer checkpoint")
    if method is not None and quantizer.info.method != method:
        raise QuantizerError(f"{path} is a {quantizer.info.method!r} quantizer, not {method!r}")
    quantizer.module.eval()
    return quantizer


def _from_ours(path: Path, raw: dict[str, Any]) -> Quantizer:
    if raw.get("format_version") != FORMAT_VERSION:
        raise QuantizerError(f"{path}: quantizer format version {raw.get('format_version')} is not supported")
    try:
        info = QuantizerInfo(**raw["info"])
        quantizer = Quantizer.create(info)
        quantizer.module.load_state_dict(raw["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise QuantizerError(f"{path}: broken quantizer checkpoint ({exc})") from exc
    quantizer.metrics = dict(raw.get("metrics") or {})
    return quantizer


def read_community_info(path: Path) -> dict[str, int] | None:
    """The `.info` JSON member of a community checkpoint, or None for the oldest files."""
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if m.endswith("/.info")]
        if not members:
            return None
        data = json.loads(archive.read(members[0]).decode("utf-8"))
    return {k: int(data[k]) for k in ("input_size", "hidden_size", "output_size", "version")}


def _from_community(path: Path, state: dict[str, torch.Tensor]) -> Quantizer:
    # The tensors say the sizes; the .info member, when present, must agree with them.
    info = QuantizerInfo(
        method="lstm",
        input_size=int(state["lstm.weight_ih_l0"].shape[1]),
        hidden_size=int(state["lstm.weight_hh_l0"].shape[1]),
        n_tokens=int(state["fc.weight"].shape[0]),
        version=1 if "intermediate.weight" in state else 0,
        source="community",
    )
    declared = read_community_info(path) if zipfile.is_zipfile(path) else None
    if declared is not None:
        found = {
            "input_size": info.input_size,
            "hidden_size": info.hidden_size,
            "output_size": info.n_tokens,
            "version": info.version,
        }
        if declared != found:
            raise QuantizerError(f"{path}: its .info says {declared} but its weights are {found}")
    quantizer = Quantizer.create(info)
    try:
        quantizer.module.load_state_dict(state)
    except RuntimeError as exc:
        raise QuantizerError(f"{path}: community checkpoint does not fit the LSTM layout ({exc})") from exc
    return quantizer


def with_hubert(quantizer: Quantizer, hubert: str, layer: int) -> Quantizer:
    """The same quantizer declared to read another HuBERT (for community files, which do not say)."""
    return Quantizer(replace(quantizer.info, hubert=hubert, layer=layer), quantizer.module, quantizer.metrics)
