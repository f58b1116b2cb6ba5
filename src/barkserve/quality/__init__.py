"""Quality scorers: ASR error rates, speaker similarity and drift, signal checks; `Scorer` runs them batched.

Nothing here loads a model at import: `Scorer` loads its models on first use.
"""

from barkserve.quality.asr import DEFAULT_ASR, WhisperTranscriber
from barkserve.quality.metrics import cer, normalize, speech_error, spoken_text, uses_cer, wer
from barkserve.quality.scorer import Scorer, ScorerConfig, Scores
from barkserve.quality.signal import SignalMeasures, measure_signal, real_time_factor
from barkserve.quality.speaker import DEFAULT_SPEAKER, Drift, XVectorEncoder, drift, similarity

__all__ = [
    "DEFAULT_ASR",
    "DEFAULT_SPEAKER",
    "Drift",
    "Scorer",
    "ScorerConfig",
    "Scores",
    "SignalMeasures",
    "WhisperTranscriber",
    "XVectorEncoder",
    "cer",
    "drift",
    "measure_signal",
    "normalize",
    "real_time_factor",
    "similarity",
    "speech_error",
    "spoken_text",
    "uses_cer",
    "wer",
]
