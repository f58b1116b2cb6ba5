"""`Scorer`: one owner of the quality models; `score_batch` scores many clips with one pass of each model.

It knows nothing of HTTP or of the engine: `barkserve eval` and per-chunk QC both hand it audio and text.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from barkserve.bark import SAMPLE_RATE
from barkserve.config import is_mos_model
from barkserve.errors import ConfigError, InvalidRequest
from barkserve.quality.asr import DEFAULT_ASR, MAX_NEW_TOKENS, WhisperTranscriber
from barkserve.quality.metrics import cer, spoken_text, uses_cer, wer
from barkserve.quality.mos import MosPredictor, Naturalness, load_mos
from barkserve.quality.resemblyzer import RESEMBLYZER, ResemblyzerEncoder
from barkserve.quality.signal import SignalMeasures, measure_signal
from barkserve.quality.speaker import DEFAULT_SPEAKER, XVectorEncoder, similarity

SpeakerEncoder = XVectorEncoder | ResemblyzerEncoder
if TYPE_CHECKING:
    from barkserve.quality.batching import ScoringQueue


@dataclass(frozen=True)
class ScorerConfig:
    """Which models score, and where they run. Checked once, in `__post_init__`."""

    # Whisper checkpoint (hub id or folder) for intelligibility; None to skip ASR.
    asr: str | None = DEFAULT_ASR
    # x-vector checkpoint (hub id or folder) for speaker similarity, or "resemblyzer" (Resemblyzer's
    # shipped d-vector weights); None to skip embeddings.
    speaker: str | None = DEFAULT_SPEAKER
    # MOS predictor for naturalness: "dnsmos" or "distillmos" (weights in their packages), or
    # "utmos:PATH" (UTMOS22 weights in the file PATH); None to skip.
    mos: str | None = None
    # "auto" (cuda when visible), "cpu", "cuda", "cuda:N".
    device: str = "auto"
    # Use only local files: a folder or the Hugging Face cache (like Bark's own --offline).
    offline: bool = False
    # Whisper's dtype; "auto" is float16 on CUDA and float32 elsewhere.
    asr_dtype: str = "auto"
    # Clips per ASR / embedding / MOS forward pass.
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.asr_dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ConfigError(f"asr_dtype must be auto, float32, float16 or bfloat16; got {self.asr_dtype!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {self.batch_size!r}")
        if self.mos is not None and (not self.mos or not is_mos_model(self.mos)):
            raise ConfigError(f"mos must be 'dnsmos', 'distillmos', 'utmos:PATH' or None; got {self.mos!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ScorerConfig:
        """Build from a mapping (settings, CLI flags); unknown keys are an error. `asr=None` / `speaker=None` skip."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown scorer settings {unknown}; known: {sorted(names)}")
        return cls(**values)


@dataclass(frozen=True)
class Scores:
    """What was measured of one clip; None where a measure was not taken."""

    signal: SignalMeasures
    transcript: str | None = None
    language: str | None = None
    wer: float | None = None
    cer: float | None = None
    # Cosine similarity to the reference embedding (None without a speaker model or a reference).
    similarity: float | None = None
    # The clip's L2-normalized speaker embedding, for drift over chunks.
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    # The MOS predictor's verdict (None without a MOS model); its `mos` is None when not scored.
    naturalness: Naturalness | None = None

    @property
    def mos(self) -> float | None:
        """The predictor's overall naturalness score, 1-5 (None: no predictor, or the clip was not scored)."""
        return None if self.naturalness is None else self.naturalness.mos

    @property
    def error(self) -> float | None:
        """The primary error rate for the language: CER for zh / ja / ko, WER otherwise."""
        if self.language is None:
            return None
        return self.cer if uses_cer(self.language) else self.wer


class Scorer:
    """Owns the ASR and speaker models, loaded on first use (once, thread-safely).

    Args:
        config: A `ScorerConfig`, or None to build one from `settings`.
        **settings: `ScorerConfig` fields, e.g. `Scorer(asr="./tiny/asr", speaker=None, device="cpu")`.
    """

    def __init__(self, config: ScorerConfig | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise ConfigError("give either a ScorerConfig or settings, not both")
        self.config = config or ScorerConfig.from_dict(settings)
        self._asr: WhisperTranscriber | None = None
        self._speaker: SpeakerEncoder | None = None
        self._mos: MosPredictor | None = None
        # A lock per model: the models load in parallel; a failed load is tried again next call.
        self._asr_lock = threading.Lock()
        self._speaker_lock = threading.Lock()
        self._mos_lock = threading.Lock()
        self._queue: ScoringQueue | None = None

    @property
    def queue(self) -> ScoringQueue:
        """This scorer's batching queue (one per scorer): chunks from every request, scored together."""
        from barkserve.quality.batching import ScoringQueue

        with self._mos_lock:
            if self._queue is None:
                self._queue = ScoringQueue(self)
            return self._queue

    @property
    def asr(self) -> WhisperTranscriber:
        """The loaded Whisper model (loaded now if it was not)."""
        if self.config.asr is None:
            raise ConfigError("this scorer has no ASR model (asr=None)")
        with self._asr_lock:  # one load, even when several threads ask at once
            if self._asr is None:
                self._asr = self._load_asr(self.config.asr)
            return self._asr

    @property
    def speaker(self) -> SpeakerEncoder:
        """The loaded speaker model (loaded now if it was not)."""
        if self.config.speaker is None:
            raise ConfigError("this scorer has no speaker model (speaker=None)")
        with self._speaker_lock:
            if self._speaker is None:
                self._speaker = self._load_speaker(self.config.speaker)
            return self._speaker

    @property
    def mos(self) -> MosPredictor:
        """The loaded MOS predictor (loaded now if it was not)."""
        if self.config.mos is None:
            raise ConfigError("this scorer has no MOS model (mos=None)")
        with self._mos_lock:
            if self._mos is None:
                self._mos = load_mos(self.config.mos, self._device())
            return self._mos

    def preload(self) -> None:
        """Load every configured model now rather than on the first batch."""
        if self.config.asr is not None:
            _ = self.asr
        if self.config.speaker is not None:
            _ = self.speaker
        if self.config.mos is not None:
            _ = self.mos

    def score_batch(
        self,
        clips: Sequence[np.ndarray],
        texts: Sequence[str],
        languages: str | Sequence[str],
        reference_embedding: np.ndarray | None = None,
        rate: int = SAMPLE_RATE,
    ) -> list[Scores]:
        """Score clips against the texts they should say.

        Args:
            clips: Mono float32 arrays at `rate` Hz.
            texts: The text of each clip, as sent to Bark (cues and speaker tags are not scored).
            languages: One language code for all clips, or one per clip.
            reference_embedding: The voice to compare with (e.g. the first accepted chunk's or the
                voice prompt's embedding); None leaves `similarity` unset.
            rate: Sample rate of `clips` (Bark's 24 kHz by default).

        Returns:
            One `Scores` per clip, in order.

        Raises:
            InvalidRequest: Counts of clips, texts and languages differ.
            ScorerUnavailable: A configured model cannot be loaded.
        """
        langs = [languages] * len(clips) if isinstance(languages, str) else list(languages)
        if not len(clips) == len(texts) == len(langs):
            raise InvalidRequest(f"got {len(clips)} clips, {len(texts)} texts and {len(langs)} languages")
        signals = [measure_signal(c, rate, t) for c, t in zip(clips, texts, strict=True)]
        transcripts: list[str | None] = [None] * len(clips)
        embeddings: list[np.ndarray | None] = [None] * len(clips)
        naturalness: list[Naturalness | None] = [None] * len(clips)
        step = self.config.batch_size
        for start in range(0, len(clips), step):
            part = list(clips[start : start + step])
            if self.config.asr is not None:
                budget = token_budget(texts[start : start + step])
                transcripts[start : start + step] = self.asr.transcribe(
                    part, langs[start : start + step], rate, max_new_tokens=budget
                )
            if self.config.speaker is not None:
                embeddings[start : start + step] = list(self.speaker.embed(part, rate))
            if self.config.mos is not None:
                naturalness[start : start + step] = self.mos.predict(part, rate)
        return [
            replace(
                _scores(signals[i], texts[i], langs[i], transcripts[i], embeddings[i], reference_embedding),
                naturalness=naturalness[i],
            )
            for i in range(len(clips))
        ]

    def _load_asr(self, source: str) -> WhisperTranscriber:
        device = self._device()
        dtype = self.config.asr_dtype
        if dtype == "auto":
            dtype = "float16" if device.startswith("cuda") else "float32"
        return WhisperTranscriber(source, device, self.config.offline, dtype)

    def _load_speaker(self, source: str) -> SpeakerEncoder:
        if source == RESEMBLYZER:
            return ResemblyzerEncoder(self._device())
        return XVectorEncoder(source, self._device(), self.config.offline)

    def _device(self) -> str:
        from barkserve.models import pick_device

        # "cuda:1" names a device directly; the short names are checked (and "auto" resolved) once.
        return self.config.device if ":" in self.config.device else pick_device(self.config.device)


_SHARED: dict[ScorerConfig, Scorer] = {}
_SHARED_LOCK = threading.Lock()


def shared_scorer(config: ScorerConfig) -> Scorer:
    """The process's one `Scorer` for `config`: its models load once, however many servers, synthesizers
    and evaluations ask for them, and its queue batches all their chunks together."""
    with _SHARED_LOCK:
        if config not in _SHARED:
            _SHARED[config] = Scorer(config)
        return _SHARED[config]


def clear_shared_scorers() -> None:
    """Forget the process's scorers (their models load again on next use): for tests, and after a fork."""
    with _SHARED_LOCK:
        _SHARED.clear()


def token_budget(texts: Sequence[str]) -> int:
    """Most tokens worth decoding for these texts: one per character of the longest, plus room.

    A transcript far longer than its text has already failed; the cap also stops Whisper's known
    repetition loops early instead of decoding to its 224-token limit.
    """
    longest = max((len(spoken_text(t)) for t in texts), default=0)
    return min(MAX_NEW_TOKENS, 16 + longest)


def _scores(
    signal: SignalMeasures,
    text: str,
    language: str,
    transcript: str | None,
    embedding: np.ndarray | None,
    reference: np.ndarray | None,
) -> Scores:
    return Scores(
        signal=signal,
        transcript=transcript,
        language=language if transcript is not None else None,
        wer=wer(text, transcript, language) if transcript is not None else None,
        cer=cer(text, transcript, language) if transcript is not None else None,
        similarity=similarity(embedding, reference) if embedding is not None and reference is not None else None,
        embedding=embedding,
    )
