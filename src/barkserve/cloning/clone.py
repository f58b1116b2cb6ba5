"""A recording in, a Bark voice prompt out: EnCodec codes for coarse/fine, HuBERT + quantizer for semantic."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from barkserve.audio.files import storage_errors
from barkserve.cloning import audio_in, codec
from barkserve.config import CloneSettings
from barkserve.errors import InvalidVoice, NotFound, VoiceExists, VoiceProtected
from barkserve.models import ModelRegistry, pick_device
from barkserve.voices import PROMPT_KEYS, RECORD_KEY, VoiceRecord, is_safe_name, validate_prompt, voice_visible

NO_SEMANTIC_NOTE = (
    "no quantizer is configured, so the semantic prompt was left out (empty); the voice keeps the "
    "recording's timbre but not its speaking style. Configure one to clone both"
)


@dataclass(frozen=True, eq=False)
class CloneResult:
    """A saved cloned voice and how it was made."""

    name: str
    path: Path
    arrays: dict[str, np.ndarray]
    duration_sec: float  # of the audio the prompt was made from
    original_sec: float  # of the uploaded recording
    trimmed: bool
    has_semantic: bool
    notes: tuple[str, ...] = ()
    record: VoiceRecord = field(default_factory=VoiceRecord)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of `POST /voices` and the CLI."""
        return {
            "name": self.name,
            "duration_sec": round(self.duration_sec, 3),
            "original_sec": round(self.original_sec, 3),
            "trimmed": self.trimmed,
            "semantic": self.has_semantic,
            "semantic_tokens": int(self.arrays["semantic_prompt"].shape[0]),
            "codec_frames": int(self.arrays["fine_prompt"].shape[1]),
            "notes": list(self.notes),
            "consent": self.record.consent,
            "ref_text": self.record.ref_text,
            "description": self.record.description,
            "language": self.record.language,
            "created_at": self.record.created_at,
        }


def validate_cloned(arrays: Mapping[str, np.ndarray], label: str) -> None:
    """`voices.validate_prompt`, also accepting the empty semantic prompt of a voice cloned without quantizer."""
    validate_prompt(arrays, label, allow_empty_semantic=True)


def semantic_tokens(featurizer: Any, quantizer: Any, wav16: np.ndarray, n_tokens: int) -> np.ndarray:
    """Semantic tokens (n_tokens,) of 16 kHz audio: HuBERT features -> quantizer -> 49.9 per second."""
    from barkserve.cloning.train import stretch

    features = featurizer.features(wav16)  # [T, D], 50 per second
    per_frame = quantizer.predict(features)  # [T]
    return stretch(per_frame, n_tokens)


def build_prompt(
    reference: audio_in.Reference, codec_model: Any, featurizer: Any = None, quantizer: Any = None
) -> dict[str, np.ndarray]:
    """The three prompt arrays of a prepared recording; semantic is empty without a quantizer."""
    codes = codec.encode_codes(codec_model, reference.wav24)  # [8, C]
    coarse, fine = codec.acoustic_prompts(codes)
    if quantizer is None or featurizer is None:
        semantic = np.zeros(0, dtype=np.int64)
    else:
        semantic = semantic_tokens(featurizer, quantizer, reference.wav16, codec.semantic_length(fine.shape[1]))
    return {"semantic_prompt": semantic, "coarse_prompt": coarse, "fine_prompt": fine}


def check_name(name: object, is_preset: Callable[[str], bool]) -> str:
    """A custom voice name that is safe as a file name and does not shadow a preset."""
    if not isinstance(name, str) or not is_safe_name(name):
        raise InvalidVoice(
            f"voice name must be 1-64 letters, digits, '_' or '-', starting with a letter or digit; got {name!r}"
        )
    if is_preset(name):
        raise VoiceExists(f"{name!r} is a preset name; choose another name for the cloned voice")
    return name


def save_voice(
    arrays: Mapping[str, np.ndarray], name: str, voices_dir: Path, record: VoiceRecord | None = None
) -> Path:
    """Write `<voices_dir>/<name>.npz` (with its `record`, when given) only if no such voice exists
    (atomic, safe between threads)."""
    with storage_errors(voices_dir):
        return _link_new(arrays, name, voices_dir, record)


def _link_new(arrays: Mapping[str, np.ndarray], name: str, voices_dir: Path, record: VoiceRecord | None = None) -> Path:
    voices_dir.mkdir(parents=True, exist_ok=True)
    final = voices_dir / f"{name}.npz"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npz.tmp", dir=voices_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            saved = {key: np.asarray(arrays[key], dtype=np.int64) for key in PROMPT_KEYS}
            if record is not None:
                saved[RECORD_KEY] = np.asarray(record.to_json())  # a 0-d string array: no pickle
            np.savez(out, **saved)  # type: ignore[arg-type]  # numpy's stub reads a name as allow_pickle
        # A hard link fails if the name exists: two uploads of one name cannot both win.
        os.link(tmp, final)
    except FileExistsError as exc:
        raise VoiceExists(f"a custom voice named {name!r} exists; delete it first or choose another name") from exc
    finally:
        os.unlink(tmp)
    return final


@dataclass(eq=False)
class Cloner:
    """What cloning needs, loaded once: the codec, and HuBERT + quantizer when one is configured.

    `codec_model` is called on first use (so the Bark model loads lazily); `is_preset` says
    whether a name belongs to the model's presets.
    """

    voices_dir: Path
    codec_model: Callable[[], Any]
    is_preset: Callable[[str], bool]
    hubert: str | None = None
    layer: int | None = None  # None: the quantizer's own layer (9 for community files)
    quantizer_path: Path | None = None
    device: str = "cpu"
    local_files_only: bool = False
    max_bytes: int = audio_in.MAX_BYTES
    max_seconds: float = audio_in.MAX_SECONDS
    _semantic: tuple[Any, Any] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: CloneSettings, registry: ModelRegistry) -> Cloner:
        """The cloner of the default model; HuBERT and the codec load on the first clone."""

        def is_preset(name: str) -> bool:
            presets = registry.voices(settings.model).presets
            return name in presets or f"v2/{name}" in presets

        return cls(
            voices_dir=settings.voices_dir,
            codec_model=lambda: registry.get(settings.model).model.codec_model,
            is_preset=is_preset,
            hubert=settings.hubert or None,
            layer=settings.hubert_layer or None,
            quantizer_path=Path(settings.quantizer) if settings.quantizer else None,
            device=pick_device(settings.device),
            local_files_only=settings.offline,
            max_bytes=settings.max_upload_bytes,
        )

    def semantic_models(self) -> tuple[Any, Any] | None:
        """(featurizer, quantizer), loaded on first use; None without a quantizer."""
        if self.quantizer_path is None:
            return None
        with self._lock:
            if self._semantic is None:
                from barkserve.cloning.hubert import DEFAULT_HUBERT, DEFAULT_LAYER, HubertFeaturizer
                from barkserve.cloning.quantizer import load_quantizer, with_hubert

                quantizer = load_quantizer(self.quantizer_path)
                if quantizer.info.source == "community":
                    # Community files do not say which HuBERT they read; the recipe is base ls960, layer 9.
                    quantizer = with_hubert(quantizer, self.hubert or DEFAULT_HUBERT, self.layer or DEFAULT_LAYER)
                hubert, layer = self.hubert or quantizer.info.hubert, self.layer or quantizer.info.layer
                quantizer.check_features(hubert, layer, quantizer.info.input_size)
                featurizer = HubertFeaturizer(hubert, layer, self.device, self.local_files_only)
                quantizer.check_features(hubert, layer, featurizer.hidden_size)
                quantizer.module.to(self.device)
                self._semantic = (featurizer, quantizer)
            return self._semantic

    def clone(
        self,
        source: str | Path | bytes | IO[bytes],
        name: object,
        reserve: Callable[[str], AbstractContextManager[object]] | None = None,
        record: VoiceRecord | None = None,
    ) -> CloneResult:
        """Clone a recording into a saved custom voice named `name`.

        `reserve(name)`, when given, is entered around writing the file only (the HTTP edge records
        the voice's owner there), so a process killed while cloning leaves no reservation behind.
        `record` (consent, transcript, description, language) is saved in the voice's file.

        Raises:
            InvalidVoice: Unsafe or empty name.
            VoiceExists: The name is taken (preset or custom voice).
            InvalidAudio, UnsupportedAudio, AudioTooLarge: The recording cannot be used.
        """
        name = check_name(name, self.is_preset)
        if (self.voices_dir / f"{name}.npz").exists():
            raise VoiceExists(f"a custom voice named {name!r} exists; delete it first or choose another name")
        reference = audio_in.prepare_reference(source, self.max_seconds, self.max_bytes)
        semantic = self.semantic_models()
        featurizer, quantizer = semantic if semantic else (None, None)
        arrays = build_prompt(reference, self.codec_model(), featurizer, quantizer)
        validate_cloned(arrays, f"cloned voice {name!r}")
        notes = [] if semantic else [NO_SEMANTIC_NOTE]
        if reference.trimmed:
            notes.append(f"the recording was trimmed to its first {self.max_seconds:g} s of sound")
        with reserve(name) if reserve is not None else nullcontext():
            path = save_voice(arrays, name, self.voices_dir, record)
        return CloneResult(
            name=name,
            path=path,
            arrays=arrays,
            duration_sec=reference.duration_sec,
            original_sec=reference.original_sec,
            trimmed=reference.trimmed,
            has_semantic=semantic is not None,
            notes=tuple(notes),
            record=record or VoiceRecord(),
        )

    def delete(self, name: str) -> Path:
        """Delete a custom voice; presets cannot be deleted."""
        if is_safe_name(name) and voice_visible(name) and (self.voices_dir / f"{name}.npz").is_file():
            path = self.voices_dir / f"{name}.npz"
            path.unlink()
            return path
        if self.is_preset(name):
            raise VoiceProtected(f"{name!r} is a preset of the model; only custom voices can be deleted")
        raise NotFound(f"no custom voice named {name!r}; GET /voices lists them")
