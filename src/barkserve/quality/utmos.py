"""UTMOS (the UTMOS22 strong learner) from a checkpoint file on this machine: nothing is downloaded.

`mos_model = "utmos:PATH"`: PATH is the state dict `utmos_state_dict.pt` published with the
`utmos-pytorch` package (MIT; Hugging Face repo Blinorot/UTMOS-PyTorch), fetched by the user. That
package's model code is used (fairseq-free: wav2vec 2.0 base, a domain and a listener embedding,
a bidirectional LSTM, an MLP scoring each frame); its own loaders would download weights from the
Hub, and load them with `strict=False`, so this module builds the model and loads the file itself.

The sizes come from the checkpoint's tensors (a real one gives the package's sizes; a tiny random
one, `barkserve.testing.tiny_utmos`, gives tiny ones), so every checkpoint takes the same path.
A file that is missing, unreadable, or lacks any of the model's tensors is `ScorerUnavailable`. The
positional convolution's weight may be saved in its two weight-norm parts (the published file) or
folded into one (a state dict saved from a loaded `UTMOSScoreTorch`).
Tensors the model does not use (fairseq's pre-training leftovers) are ignored.

A clip is scored whole, the frames' scores averaged, as UTMOS does (domain 0, listener 288, the
"mean listener"; score = 2 x mean + 3). Padding would change wav2vec 2.0's group-normalized
features, so only clips of equal length share a forward pass.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from barkserve.errors import ScorerUnavailable

if TYPE_CHECKING:
    import torch

INSTALL = "pip install 'barkserve[mos]' (utmos-pytorch)"
# UTMOS22's inference setting: the main-track domain and the listener id of the mean listener.
DOMAIN, LISTENER = 0, 288
HEADS = 12  # wav2vec 2.0 base's attention heads (not recoverable from tensor shapes)
_SSL = "feature_extractors.0.ssl_model."
_POS_CONV = "encoder.pos_conv.0"  # weight-normed: weight_g and weight_v, or one weight once folded


@dataclass(frozen=True)
class UtmosShape:
    """The sizes of a UTMOS model; `UtmosShape()` is UTMOS22's (the package's `UTMOSModel`)."""

    width: int = 768  # wav2vec 2.0 transformer width
    layers: int = 12  # transformer layers
    ffn: int = 3072  # transformer feed-forward width
    conv: int = 512  # feature-encoder channels
    domains: int = 3
    domain_dim: int = 128
    listeners: int = 3000
    listener_dim: int = 128
    hidden: int = 2048  # the scoring MLP's hidden width

    @classmethod
    def of(cls, state: dict[str, Any]) -> UtmosShape:
        """The sizes a state dict was saved with (KeyError when it is not a UTMOS state dict)."""
        layers = 1 + max(int(k.split(".")[5]) for k in state if k.startswith(_SSL + "encoder.layers."))
        return cls(
            width=state[_SSL + "encoder.layer_norm.weight"].shape[0],
            layers=layers,
            ffn=state[_SSL + "encoder.layers.0.fc1.weight"].shape[0],
            conv=state[_SSL + "feature_extractor.conv_layers.0.0.weight"].shape[0],
            domains=state["feature_extractors.1.embedding.weight"].shape[0],
            domain_dim=state["feature_extractors.1.embedding.weight"].shape[1],
            listeners=state["output_layers.0.judge_embedding.weight"].shape[0],
            listener_dim=state["output_layers.0.judge_embedding.weight"].shape[1],
            hidden=state["output_layers.1.net.0.weight"].shape[0],
        )


def build(shape: UtmosShape) -> torch.nn.Module:
    """An untrained UTMOS model of `shape`, with `utmos_pytorch.UTMOSModel`'s modules and tensor names."""
    from torch import nn

    try:
        from utmos_pytorch.utmos_torch import DomainEmbedding, LDConditioner, Projection, SSL_model, UTMOSModel
        from utmos_pytorch.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    except ImportError as exc:
        raise ScorerUnavailable(f"MOS model 'utmos' needs a package that is not installed ({exc}): {INSTALL}") from exc
    c = shape.conv
    config = Wav2Vec2Config(
        conv_feature_layers=f"[({c}, 10, 5)] + [({c}, 3, 2)] * 4 + [({c}, 2, 2)] * 2",  # wav2vec 2.0 base
        encoder_layers=shape.layers,
        encoder_embed_dim=shape.width,
        encoder_ffn_embed_dim=shape.ffn,
        encoder_attention_heads=HEADS,
    )
    # UTMOSModel's __init__ fixes the sizes; the same modules are put together here at `shape`'s.
    model = UTMOSModel.__new__(UTMOSModel)
    nn.Module.__init__(model)
    model.feature_extractors = nn.ModuleList(
        [SSL_model(Wav2Vec2Model(config), shape.width), DomainEmbedding(shape.domains, shape.domain_dim)]
    )
    conditioner = LDConditioner(
        input_dim=shape.width + shape.domain_dim, judge_dim=shape.listener_dim, num_judges=shape.listeners
    )
    head = Projection(input_dim=conditioner.get_output_dim(), hidden_dim=shape.hidden, activation=nn.ReLU())
    model.output_layers = nn.ModuleList([conditioner, head])
    return model


def load_utmos(path: Path, device: str) -> torch.nn.Module:
    """The UTMOS model saved at `path`, on `device`, in eval mode.

    Raises:
        ScorerUnavailable: The file is missing or unreadable, is not a UTMOS state dict, or lacks
            some of the model's tensors; or utmos-pytorch is not installed.
    """
    import torch

    def unavailable(reason: str) -> ScorerUnavailable:
        return ScorerUnavailable(
            f"MOS model 'utmos' could not be loaded from {str(path)!r}: {reason}. barkserve never downloads it: "
            f"fetch utmos_state_dict.pt (Hugging Face repo Blinorot/UTMOS-PyTorch) once and set "
            f"mos_model to 'utmos:' followed by its path"
        )

    if not path.is_file():
        raise unavailable("there is no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise unavailable(f"it is not a readable torch checkpoint ({str(exc).splitlines()[0]})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise unavailable("it holds no state dict (a mapping of tensor names to tensors)")
    try:
        shape = UtmosShape.of(state)
    except (KeyError, ValueError, IndexError) as exc:
        raise unavailable(f"it is not a UTMOS state dict (no tensor {exc})") from exc
    model = build(shape)
    if _SSL + _POS_CONV + ".weight" in state:  # saved after utmos-pytorch folded the weight norm in
        from torch import nn

        nn.utils.remove_weight_norm(model.get_submodule(_SSL + _POS_CONV))
    try:
        missing, _unused = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise unavailable(f"its tensors do not fit a UTMOS model ({str(exc).splitlines()[-1].strip()})") from exc
    if missing:
        raise unavailable(f"it lacks {len(missing)} of the model's tensors, e.g. {missing[0]!r} (a damaged file?)")
    return model.to(device).eval()


def utmos_scores(model: torch.nn.Module, audio: torch.Tensor) -> torch.Tensor:
    """UTMOS scores (1-5 scale) of equal-length 16 kHz clips `audio` [B, T] -> [B]."""
    import torch

    batch = audio.shape[0]
    domains = torch.full((batch,), DOMAIN, dtype=torch.long, device=audio.device)
    listeners = torch.full((batch,), LISTENER, dtype=torch.long, device=audio.device)
    frames = model(audio[:, None, :], domains, listeners)  # [B, T', 1]: a score per frame
    return frames.mean(dim=1)[:, 0] * 2 + 3
