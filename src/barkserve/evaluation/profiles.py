"""Eval profiles: scorer choices that follow a published protocol, so figures can sit beside its tables.

`seed-tts` follows Seed-TTS-eval (github.com/BytedanceSpeech/seed-tts-eval), the protocol serving
systems publish WER and speaker similarity (SIM) under:

- WER: `openai/whisper-large-v3` (not the turbo default), with Whisper's English normalizer
  (transformers' `EnglishTextNormalizer`) on both the text and the transcript; Bark's cues and
  speaker tags removed first (quality.metrics). Seed-TTS-eval scores Chinese with Paraformer-zh,
  which is not a transformers model: this profile scores zh with Whisper-large-v3 and CER instead.
- SIM: cosine similarity of WavLM-large speaker-verification embeddings. Seed-TTS-eval's checkpoint
  (UniSpeech's `wavlm_large_finetune.pth`, WavLM-large with an ECAPA-TDNN head) is not in
  transformers' format, so the profile takes a WavLM-large `WavLMForXVector` checkpoint (a hub id
  or a folder saved with save_pretrained) that the user names with `--speaker-model`; the report
  records its size. The number is the same kind of measure, not bit-identical to the published one.

Nothing is downloaded here: with `--offline` the checkpoints must be in the Hugging Face cache or folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from barkserve.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    asr_model: str
    speaker_family: str  # the model_type the speaker checkpoint must have
    normalizer: str
    note: str


SEED_TTS = Profile(
    name="seed-tts",
    asr_model="openai/whisper-large-v3",
    speaker_family="wavlm",
    normalizer="Whisper's EnglishTextNormalizer (transformers) for en; NFKC case-folded, punctuation removed otherwise",
    note="Seed-TTS-eval protocol: Whisper-large-v3 WER; SIM from a WavLM-large speaker-verification model "
    "(WavLMForXVector here; Seed-TTS-eval's own is UniSpeech's WavLM-large + ECAPA-TDNN)",
)
PROFILES = {SEED_TTS.name: SEED_TTS}


def get_profile(name: str) -> Profile:
    """The profile called `name`.

    Raises:
        ConfigError: No such profile.
    """
    if name not in PROFILES:
        raise ConfigError(f"unknown eval profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]


def describe(profile: Profile, speaker: object) -> dict[str, object]:
    """The report's record of a profile and the speaker model that ran under it.

    Raises:
        ConfigError: The speaker model is not of the profile's family (e.g. not WavLM).
    """
    config: Any = getattr(getattr(speaker, "model", None), "config", None)
    family = getattr(config, "model_type", None)
    if family != profile.speaker_family:
        source = getattr(speaker, "source", speaker)
        raise ConfigError(
            f"eval profile {profile.name} needs a {profile.speaker_family} speaker-verification checkpoint "
            f"(--speaker-model, e.g. a WavLM-large WavLMForXVector folder); got {source!r} "
            f"({family or 'not a transformers x-vector model'})"
        )
    return {
        "name": profile.name,
        "asr_model": profile.asr_model,
        "normalizer": profile.normalizer,
        "speaker_family": family,
        "speaker_hidden_size": int(config.hidden_size),
        "speaker_layers": int(config.num_hidden_layers),
        "speaker_is_large": int(config.hidden_size) == 1024 and int(config.num_hidden_layers) == 24,
        "note": profile.note,
    }
