"""Naturalness: a MOS predictor's 1-5 score of how a clip sounds (noise, static, hiss, not speech).

Two predictors whose weights ship inside their PyPI packages, so they load offline (both MIT):

- `dnsmos`: Microsoft's DNSMOS P.835 (package `speechmos`, ONNX, run by onnxruntime): an overall
  score (OVRL) with its signal (SIG) and background (BAK) parts, and the P.808 score. It reads
  9.01 s windows at 16 kHz, a second apart; a shorter clip is repeated to fill one (its protocol).
- `distillmos`: Distill-MOS (package `distillmos`, a 2M-parameter CNN + transformer in torch),
  distilled from an XLS-R quality model; 7.68 s segments, the scores of a long clip averaged.

Both score every window of every clip of a batch in one forward pass. A third, `utmos:PATH`, is
UTMOS22 from a checkpoint file the user downloaded (see `quality.utmos`; nothing is fetched); it
scores each clip whole. A clip shorter than `MIN_SEC` is not scored: the predictors would score
their own padding or repetition.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.config import UTMOS_PREFIX
from barkserve.errors import ScorerUnavailable

MOS_RATE = 16_000
# Shortest clip scored. Shorter ones (a chunk that ended at once) get `not_scored`, not a number.
MIN_SEC = 1.0
DISTILLMOS_INSTALL = "pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0"
PREDICTORS = {
    "dnsmos": "DNSMOS P.835 (overall, SIG, BAK) and P.808, Microsoft's ONNX weights from the speechmos package",
    "distillmos": "Distill-MOS (variant 7, the distillmos package's weights)",
}


@dataclass(frozen=True)
class Naturalness:
    """One clip's naturalness as one predictor heard it."""

    predictor: str  # "dnsmos", "distillmos" or "utmos"
    mos: float | None  # overall score, 1 (bad) to 5 (excellent); None when not scored
    # The predictor's other outputs: DNSMOS's "sig", "bak" (P.835) and "p808"; empty for Distill-MOS.
    parts: Mapping[str, float] = field(default_factory=dict)
    not_scored: str | None = None  # why there is no score


class MosPredictor(Protocol):
    """Scores clips of any length; one forward pass for a batch."""

    name: str

    def predict(self, clips: Sequence[np.ndarray], rate: int) -> list[Naturalness]: ...


def load_mos(name: str, device: str = "cpu") -> MosPredictor:
    """The predictor called `name` on `device`: "dnsmos", "distillmos" (weights in their packages) or
    "utmos:PATH" (UTMOS22 weights in the file PATH).

    Raises:
        ScorerUnavailable: The name is unknown, its package is not installed, or its weights do not load.
    """
    if name == "dnsmos":
        return DnsMos(device)
    if name == "distillmos":
        return DistillMos(device)
    if name.startswith(UTMOS_PREFIX) and len(name) > len(UTMOS_PREFIX):
        return Utmos(Path(name[len(UTMOS_PREFIX) :]).expanduser(), device)
    raise ScorerUnavailable(
        f"MOS model {name!r} is unknown; use 'dnsmos', 'distillmos' or 'utmos:PATH' (or '' for none)"
    )


def describe_mos(name: str | None) -> str | None:
    """Which predictor and which weights `name` means, in words (for reports); None for no predictor."""
    if not name:
        return None
    if name.startswith(UTMOS_PREFIX):
        return f"UTMOS22 strong learner (utmos-pytorch's model), weights from the file {name[len(UTMOS_PREFIX) :]}"
    return PREDICTORS.get(name)


class _Predictor:
    """Shared part: short clips set aside, the rest resampled to 16 kHz and scored in one batch."""

    name = ""

    def predict(self, clips: Sequence[np.ndarray], rate: int) -> list[Naturalness]:
        """Naturalness of mono float clips at `rate` Hz, in order."""
        out: list[Naturalness | None] = [None] * len(clips)
        keep = []
        for i, clip in enumerate(clips):
            seconds = len(clip) / rate
            if seconds < MIN_SEC:
                why = f"the clip is {seconds:.2f} s; {self.name} scores clips of at least {MIN_SEC} s"
                out[i] = Naturalness(self.name, None, not_scored=why)
            else:
                keep.append(i)
        if keep:
            audio = [np.clip(resample(np.asarray(clips[i], np.float32), rate, MOS_RATE), -1.0, 1.0) for i in keep]
            for i, result in zip(keep, self._score(audio), strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    def _score(self, audio: list[np.ndarray]) -> list[Naturalness]:
        raise NotImplementedError


class DnsMos(_Predictor):
    """DNSMOS P.835 and P.808 from `speechmos`'s ONNX files, on onnxruntime (CUDA when asked and present)."""

    name = "dnsmos"

    def __init__(self, device: str = "cpu") -> None:
        dnsmos = _import("speechmos.dnsmos", "dnsmos", "pip install 'barkserve[mos]' (speechmos and onnxruntime)")
        import onnxruntime as ort
        import torch

        folder = Path(dnsmos.__file__).parent / "dnsmos_models"
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.split(":")[1]) if ":" in device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        # One thread budget for the process: onnxruntime's pool takes as many threads as torch's
        # (OMP_NUM_THREADS, torch.set_num_threads) rather than every core again beside the engine's.
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.p835 = ort.InferenceSession(str(folder / "sig_bak_ovr.onnx"), options, providers=providers)
            self.p808 = ort.InferenceSession(str(folder / "model_v8.onnx"), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ScorerUnavailable(f"MOS model 'dnsmos' could not be loaded from {folder}: {exc}") from exc
        # speechmos's feature extraction and calibration polynomials, without its sessions.
        self._reference = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        self._window, self._rate = dnsmos.INPUT_LENGTH, dnsmos.SR

    def _windows(self, audio: np.ndarray) -> list[np.ndarray]:
        """DNSMOS's windows of one clip: 9.01 s, a second apart; a short clip repeated until it fills one."""
        need = int(self._window * self._rate)
        while len(audio) < need:
            audio = np.append(audio, audio)
        hops = int(np.floor(len(audio) / self._rate) - self._window) + 1
        spans = [(int(i * self._rate), int((i + self._window) * self._rate)) for i in range(hops)]
        return [audio[a:b] for a, b in spans if len(audio[a:b]) >= need]

    def _score(self, audio: list[np.ndarray]) -> list[Naturalness]:
        windows = [self._windows(a) for a in audio]
        flat = np.stack([w for ws in windows for w in ws]).astype(np.float32)  # [W, 144160]
        mels = np.stack([self._reference.audio_melspec(audio=w[:-160]) for w in flat]).astype(np.float32)
        (raw,) = self.p835.run(None, {"input_1": flat})  # [W, 3]: sig, bak, ovr before calibration
        (p808,) = self.p808.run(None, {"input_1": mels})  # [W, 1]
        sig, bak, ovr = self._reference.get_polyfit_val(raw[:, 0], raw[:, 1], raw[:, 2], False)  # [W] each
        out, start = [], 0
        for ws in windows:
            part = slice(start, start + len(ws))
            start += len(ws)
            parts = {"sig": float(sig[part].mean()), "bak": float(bak[part].mean()), "p808": float(p808[part].mean())}
            out.append(Naturalness(self.name, float(ovr[part].mean()), parts))
        return out


class DistillMos(_Predictor):
    """Distill-MOS (variant 7, the package's weights) in torch on `device`."""

    name = "distillmos"

    def __init__(self, device: str = "cpu") -> None:
        import torch

        sqa = _import_distillmos()
        try:
            model = sqa.ConvTransformerSQAModel(load_weights=False, segmenting_in_forward=False)
            state = torch.load(sqa.DEFAULT_WEIGHTS_CHKPT, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
        except (OSError, RuntimeError, KeyError) as exc:
            raise ScorerUnavailable(f"MOS model 'distillmos' could not be loaded: {exc}") from exc
        self.model = model.to(device).eval()
        self.device = device
        self._length, self._hop = int(sqa.SEQ_LEN), int(sqa.MAX_HOP_LEN)
        self._lock = threading.Lock()

    def _segments(self, audio: np.ndarray) -> list[np.ndarray]:
        """Distill-MOS's segments: 7.68 s, evenly spread at most 1 s apart; a short clip zero-padded."""
        over = len(audio) - self._length
        if over < 0:
            return [np.pad(audio, (0, -over))]
        starts = np.linspace(0, 1, int(np.ceil(over / self._hop)) + 1)
        return [audio[int(c * over) : int(c * over) + self._length] for c in starts]

    def _score(self, audio: list[np.ndarray]) -> list[Naturalness]:
        import torch

        segments = [self._segments(a) for a in audio]
        batch = torch.from_numpy(np.stack([s for ss in segments for s in ss]).astype(np.float32))  # [S, 122880]
        with self._lock, torch.inference_mode():
            scores = self.model(batch.to(self.device)).float().cpu().numpy().reshape(-1)  # [S]
        out, start = [], 0
        for ss in segments:
            out.append(Naturalness(self.name, float(scores[start : start + len(ss)].mean())))
            start += len(ss)
        return out


class Utmos(_Predictor):
    """UTMOS22 from the state dict at `path` (see `quality.utmos`), in torch on `device`."""

    name = "utmos"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        from barkserve.quality.utmos import load_utmos

        self.model = load_utmos(path, device)
        self.device = device
        self._lock = threading.Lock()

    def _score(self, audio: list[np.ndarray]) -> list[Naturalness]:
        import torch

        from barkserve.quality.utmos import utmos_scores

        # Padding would change the scores: clips of one length go together, each length its own pass.
        by_length: dict[int, list[int]] = {}
        for i, clip in enumerate(audio):
            by_length.setdefault(len(clip), []).append(i)
        scores = np.zeros(len(audio))
        with self._lock, torch.inference_mode():
            for rows in by_length.values():
                batch = torch.from_numpy(np.stack([audio[i] for i in rows]).astype(np.float32))  # [B, T]
                scores[rows] = utmos_scores(self.model, batch.to(self.device)).float().cpu().numpy()
        return [Naturalness(self.name, float(s)) for s in scores]


def _import(module: str, name: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ScorerUnavailable(f"MOS model {name!r} needs a package that is not installed ({exc}): {install}") from exc


def _import_distillmos() -> Any:
    """`distillmos.sqa`, importable without torchaudio.

    distillmos imports torchaudio at its top, but only its command-line file reader uses it; and
    torchaudio's wheels pin a torch version other than barkserve's. Without torchaudio an empty
    stand-in module is seen during the import only, then removed.
    """
    if importlib.util.find_spec("torchaudio") is not None or "distillmos.sqa" in sys.modules:
        return _import("distillmos.sqa", "distillmos", DISTILLMOS_INSTALL)
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        return _import("distillmos.sqa", "distillmos", DISTILLMOS_INSTALL)
    finally:
        del sys.modules["torchaudio"]
