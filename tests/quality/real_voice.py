"""Real speech for the quality tests: espeak-ng voices, and Resemblyzer's pretrained speaker encoder.

Resemblyzer's package ships its trained weights (`pretrained.pt`, 17 MB, a 3-layer LSTM d-vector
encoder trained on VoxCeleb and LibriSpeech). Its own `import resemblyzer` needs `pkg_resources`
(through webrtcvad), which current setuptools no longer has, so the weights are read here into the
same small network, with the same 40-band mel front end (librosa, one of its dependencies).
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np

from support import missing

RATE = 16_000
PARTIAL_FRAMES = 160  # 1.6 s of 10 ms frames per partial utterance, as Resemblyzer
PARTIAL_STEP = 80


def espeak(text: str, voice: str) -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng `voice` (e.g. "en+m1"): mono float32 samples and their rate."""
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, int(rate)


class DVectorEncoder:
    """Resemblyzer's VoiceEncoder network with its shipped weights: 40 mel bands -> LSTM -> 256-d d-vector."""

    def __init__(self) -> None:
        import torch

        spec = importlib.util.find_spec("resemblyzer")  # finds the folder without running its __init__
        if spec is None or not spec.submodule_search_locations:
            missing("resemblyzer is not installed (pip install -e '.[dev]')")
            raise AssertionError("unreachable")
        weights = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
        state = torch.load(weights, map_location="cpu")["model_state"]
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """The L2-normalized mean of the d-vectors of 1.6 s partials of the utterance."""
        import librosa
        import soxr
        import torch

        wav = soxr.resample(audio, rate, RATE) if rate != RATE else audio
        wav = wav * (10 ** (-30 / 20) / np.sqrt(np.mean(wav**2)))  # Resemblyzer's -30 dBFS level
        mel = librosa.feature.melspectrogram(y=wav, sr=RATE, n_fft=400, hop_length=160, n_mels=40).T  # [frames, 40]
        starts = range(0, max(1, len(mel) - PARTIAL_FRAMES + 1), PARTIAL_STEP)
        partials = np.stack([np.pad(mel[s : s + PARTIAL_FRAMES], ((0, max(0, s + PARTIAL_FRAMES - len(mel))), (0, 0)))
                             for s in starts])  # fmt: skip
        with torch.inference_mode():
            _, (hidden, _) = self.lstm(torch.from_numpy(partials.astype(np.float32)))  # hidden [3, P, 256]
            vectors = torch.relu(self.linear(hidden[-1]))  # [P, 256]
            vectors = vectors / vectors.norm(dim=1, keepdim=True)
        mean = vectors.mean(0).numpy()
        return mean / np.linalg.norm(mean)
