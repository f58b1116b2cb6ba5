"""HuBERT features of 16 kHz audio (transformers `HubertModel`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from barkserve.errors import ConfigError, ModelUnavailable

DEFAULT_HUBERT = "facebook/hubert-base-ls960"
# The community recipe reads the 9th transformer layer (fairseq `output_layer=9`); transformers'
# `hidden_states[9]` is the output of that layer (index 0 is the input to the first layer).
DEFAULT_LAYER = 9
FEATURE_RATE = 50.0  # frames per second at 16 kHz (conv stride 320)


class HubertFeaturizer:
    """Loads a `HubertModel` once and returns one layer's features of 16 kHz audio."""

    def __init__(
        self,
        source: str = DEFAULT_HUBERT,
        layer: int = DEFAULT_LAYER,
        device: str = "cpu",
        local_files_only: bool = False,
    ) -> None:
        from transformers import HubertModel

        try:
            model: Any = HubertModel.from_pretrained(source, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"HuBERT {source!r} could not be loaded ({str(exc).splitlines()[0]}); give a hub id such as "
                f"{DEFAULT_HUBERT!r} (downloaded once) or a local folder saved with save_pretrained"
            ) from exc
        model.to(device)
        self.model = model.eval()
        n_layers = int(self.model.config.num_hidden_layers)
        if not 1 <= layer <= n_layers:
            raise ConfigError(f"HuBERT {source!r} has layers 1..{n_layers}; got layer {layer}")
        self.source = source
        self.layer = layer
        self.device = device
        # Base models (group-norm feature extractor) were trained on raw audio; large ones ("layer")
        # on zero-mean unit-variance audio, as fairseq's `normalize` flag does.
        self.normalize = self.model.config.feat_extract_norm == "layer"

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def features(self, wav16: np.ndarray) -> Any:
        """(T, D) float32 CPU tensor of layer features, T ~ 50 per second of audio."""
        import torch

        wav = np.asarray(wav16, dtype=np.float32)
        if self.normalize:
            wav = (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)
        with torch.inference_mode():
            x = torch.from_numpy(wav).to(self.device)[None]  # [1, samples]
            # transformers has no early exit: the layers above `layer` run too, and are discarded.
            out = self.model(x, output_hidden_states=True)
            return out.hidden_states[self.layer][0].float().cpu()  # [T, D]
