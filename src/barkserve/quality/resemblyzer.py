"""Speaker similarity offline: Resemblyzer's d-vector encoder with the weights its package ships.

Resemblyzer (`pretrained.pt`, 17 MB: a 3-layer LSTM over 40 mel bands, trained on VoxCeleb and
LibriSpeech) gives 256-value embeddings. Its own `import resemblyzer` needs `pkg_resources` (through
webrtcvad), which current setuptools no longer has, so the weights are read here into the same small
network with the same mel front end (librosa). Install: `pip install librosa` and
`pip install --no-deps resemblyzer==0.1.4`. Same voice against other voices on espeak-ng speech in
seven languages (benchmarks/calibrate_qc.py, benchmarks/results/cpu-2core-qc-calibration.json): same
voice 0.83-0.96 (mean 0.92, 21 pairs), espeak-ng's other variants of the language 0.50-0.97 (mean 0.71, 84 pairs); the
chosen `min_similarity` is 0.85 (qc.CALIBRATED_MIN_SIMILARITY).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.bark import SAMPLE_RATE
from barkserve.errors import ScorerUnavailable

RESEMBLYZER = "resemblyzer"
RATE = 16_000
# Partial utterances of 1.6 s (160 frames of 10 ms), every 0.8 s, as Resemblyzer slices them.
PARTIAL_FRAMES = 160
PARTIAL_STEP = 80
LEVEL_DBFS = -30.0  # every clip is scaled to this RMS level first, as Resemblyzer does
INSTALL = "pip install librosa && pip install --no-deps resemblyzer==0.1.4"


class ResemblyzerEncoder:
    """Resemblyzer's VoiceEncoder network with its shipped weights; `embed` runs a batch in one pass.

    Raises:
        ScorerUnavailable: resemblyzer (its weights) or librosa is not installed.
    """

    source = RESEMBLYZER
    size = 256

    def __init__(self, device: str = "cpu") -> None:
        import torch

        spec = importlib.util.find_spec("resemblyzer")  # the folder, without running its __init__
        if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("librosa") is None:
            raise ScorerUnavailable(f"speaker model 'resemblyzer' needs resemblyzer and librosa: {INSTALL}")
        weights = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
        try:
            state = torch.load(weights, map_location="cpu")["model_state"]
        except (OSError, RuntimeError, KeyError) as exc:
            raise ScorerUnavailable(f"speaker model 'resemblyzer' could not be loaded from {weights}: {exc}") from exc
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.to(device).eval()
        self.linear.to(device).eval()
        self.device = device
        self._lock = threading.Lock()

    def embed(self, clips: Sequence[np.ndarray], rate: int = SAMPLE_RATE) -> np.ndarray:
        """L2-normalized embeddings of mono float clips, float32 [N, 256], in order."""
        import torch

        if not clips:
            return np.zeros((0, self.size), dtype=np.float32)
        partials = [_partials(resample(np.asarray(c, np.float32), rate, RATE)) for c in clips]
        batch = torch.from_numpy(np.concatenate(partials).astype(np.float32)).to(self.device)  # [P, 160, 40]
        with self._lock, torch.inference_mode():
            _, (hidden, _) = self.lstm(batch)  # hidden [3, P, 256]
            partial_vectors = torch.relu(self.linear(hidden[-1]))  # [P, 256]
            vectors = torch.nn.functional.normalize(partial_vectors, dim=1).cpu().numpy()
        out, start = [], 0
        for p in partials:
            mean = vectors[start : start + len(p)].mean(0)  # the utterance: the mean of its partials
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            start += len(p)
        return np.stack(out).astype(np.float32)


def _partials(wav: np.ndarray) -> np.ndarray:
    """The 1.6 s mel partials of one 16 kHz clip, [P, 160, 40]; a short clip is one zero-padded partial."""
    import librosa

    wav = np.pad(wav, (0, max(0, 400 - len(wav))))  # at least one mel frame's window
    rms = float(np.sqrt(np.mean(wav**2)))
    wav = wav * (10 ** (LEVEL_DBFS / 20) / rms) if rms > 0 else wav
    mel = librosa.feature.melspectrogram(y=wav, sr=RATE, n_fft=400, hop_length=160, n_mels=40).T  # [frames, 40]
    starts = range(0, max(1, len(mel) - PARTIAL_FRAMES + 1), PARTIAL_STEP)
    return np.stack([np.pad(mel[s : s + PARTIAL_FRAMES], ((0, max(0, s + PARTIAL_FRAMES - len(mel))), (0, 0)))
                     for s in starts])  # fmt: skip
