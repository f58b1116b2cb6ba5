"""Voice prompts: validation, presets from a checkpoint's `speaker_embeddings/`, custom `.npz` files."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from barkserve.bark import CODEBOOK_SIZE, N_COARSE, N_FINE, SEMANTIC_VOCAB
from barkserve.errors import InvalidRequest, InvalidVoice, ModelUnavailable, model_unavailable

LANGUAGES = ("de", "en", "es", "fr", "hi", "it", "ja", "ko", "pl", "pt", "ru", "tr", "zh")
PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
# A custom voice's record (consent, transcript, description, language) rides in its .npz under this key,
# as a JSON string, so the voice and what is known of it are written, replaced and deleted together.
RECORD_KEY = "voice_record"
MAX_REF_TEXT = 2000
MAX_DESCRIPTION = 500
# Names that become file names (custom voices) are kept to a safe alphabet, matched whole: `re.match`
# with `$` would also accept a trailing newline ("evil\n"), a name no route could use or delete.
CUSTOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


# Which custom voices the current caller may use and list (tenancy). The HTTP edge sets it for each
# request of a key that sees only its own voices and resets it when the request ends; library callers
# (the CLI, the job runner, a Python program) leave it None and see every voice.
VOICE_FILTER: ContextVar[Callable[[str], bool] | None] = ContextVar("barkserve_voice_filter", default=None)


def voice_visible(name: str) -> bool:
    """Whether the current caller may use custom voice `name` (VOICE_FILTER)."""
    visible = VOICE_FILTER.get()
    return visible is None or visible(name)


def is_safe_name(name: object) -> bool:
    """True for 1-64 ASCII letters, digits, '_' or '-', starting with a letter or digit, and nothing else."""
    return isinstance(name, str) and CUSTOM_NAME.fullmatch(name) is not None


def without_files(names: Iterable[str], voices_dir: Path) -> list[str]:
    """The custom voice names among `names` that have no file in `voices_dir`.

    The HTTP edge records who cloned a voice just before its file is written: a record without a file
    is left by a process that died in between, and is dropped (a file without a record is the
    operator's, shared by every key).
    """
    return sorted(name for name in names if not (voices_dir / f"{name}.npz").is_file())


VALID_HINT = (
    "use an integer 0-9 (v2/en_speaker_N), a preset name like 'v2/en_speaker_6', 'de_speaker_3' or "
    "'announcer', or the name of a custom voice; GET /voices lists them all"
)


def language_of(voice_name: str) -> str | None:
    """The language of a preset name like `v2/de_speaker_3` (None for custom voices)."""
    match = re.match(r"^(?:v2/)?([a-z]{2})_speaker_\d$", voice_name)
    return match.group(1) if match else None


@dataclass(frozen=True)
class VoiceRecord:
    """What an upload said of a custom voice: None where it said nothing (or the voice is older)."""

    consent: bool | None = None  # the uploader confirmed the speaker agreed to be cloned
    ref_text: str | None = None  # what the recording says
    description: str | None = None
    language: str | None = None  # one of LANGUAGES: the language the voice speaks
    created_at: str | None = None  # ISO 8601, UTC

    @classmethod
    def checked(cls, **fields: Any) -> VoiceRecord:
        """A record from an upload's fields, each checked (a 400 that names the field)."""
        consent, ref_text = fields.get("consent"), fields.get("ref_text")
        description, language = fields.get("description"), fields.get("language")
        if consent is not None and not isinstance(consent, bool):
            raise InvalidRequest(f"consent must be true or false; got {consent!r}")
        for name, value, most in (("ref_text", ref_text, MAX_REF_TEXT), ("description", description, MAX_DESCRIPTION)):
            if value is not None and (not isinstance(value, str) or len(value) > most):
                raise InvalidRequest(f"{name} must be text of at most {most} characters; got {len(str(value))}")
        if language is not None and language not in LANGUAGES:
            raise InvalidRequest(f"language must be one of {list(LANGUAGES)}; got {language!r}")
        return cls(consent, ref_text or None, description or None, language, fields.get("created_at"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> VoiceRecord:
        raw = json.loads(text)
        return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__})


def read_record(path: Path) -> VoiceRecord:
    """The record kept in a custom voice's .npz; an empty one when it has none (or cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if RECORD_KEY not in data.files:
                return VoiceRecord()
            return VoiceRecord.from_json(str(data[RECORD_KEY]))
    except (OSError, ValueError, EOFError, TypeError):  # a broken file says nothing; using it says why
        return VoiceRecord()


@dataclass(frozen=True, eq=False)
class VoicePrompt:
    """Bark's history prompt: semantic (S,), coarse (2, C) and fine (8, C) token arrays."""

    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        # An empty semantic prompt is allowed here (a voice cloned without a quantizer); presets
        # and `from_arrays(strict=True)` refuse it.
        arrays = {"semantic_prompt": self.semantic, "coarse_prompt": self.coarse, "fine_prompt": self.fine}
        validate_prompt(arrays, self.name or "voice prompt", allow_empty_semantic=True)

    @property
    def has_semantic(self) -> bool:
        return len(self.semantic) > 0

    @classmethod
    def from_history(cls, semantic: np.ndarray, fine: np.ndarray, name: str = "") -> VoicePrompt:
        """The tokens a generation made, (S,) semantic and (8, C) fine, as the next one's prompt."""
        return cls(semantic=semantic, coarse=fine[:2], fine=fine, name=name)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], name: str = "", strict: bool = True) -> VoicePrompt:
        """Build a prompt from a mapping with the three keys, validating it.

        `strict=False` accepts an empty semantic prompt (custom voices cloned without a quantizer).
        """
        missing = [k for k in PROMPT_KEYS if k not in arrays]
        if missing:
            raise InvalidVoice(f"{name or 'voice prompt'} is missing {missing}; a Bark voice has {list(PROMPT_KEYS)}")
        prompt = cls(
            semantic=np.asarray(arrays["semantic_prompt"]),
            coarse=np.asarray(arrays["coarse_prompt"]),
            fine=np.asarray(arrays["fine_prompt"]),
            name=name,
        )
        if strict and not prompt.has_semantic:
            raise InvalidVoice(f"{name or 'voice prompt'}: semantic_prompt must have shape (S,) with S > 0; got (0,)")
        return prompt

    @classmethod
    def from_npz(cls, path: str | Path, name: str = "", strict: bool = True) -> VoicePrompt:
        """Load and validate a `.npz` prompt; a broken file is an `InvalidVoice`, not a crash later."""
        label = name or Path(path).name
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise InvalidVoice(f"{label}: not a readable .npz voice prompt ({exc})") from exc
        return cls.from_arrays(arrays, name=label, strict=strict)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"semantic_prompt": self.semantic, "coarse_prompt": self.coarse, "fine_prompt": self.fine}


def validate_prompt(arrays: Mapping[str, np.ndarray], label: str, allow_empty_semantic: bool = False) -> None:
    """Check keys, integer dtypes, shapes, token ranges and that fine's first rows equal coarse."""
    expected = {"semantic_prompt": (1, None), "coarse_prompt": (2, N_COARSE), "fine_prompt": (2, N_FINE)}
    limits = {"semantic_prompt": SEMANTIC_VOCAB, "coarse_prompt": CODEBOOK_SIZE, "fine_prompt": CODEBOOK_SIZE}
    for key, (ndim, rows) in expected.items():
        array = arrays[key]
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
            raise InvalidVoice(f"{label}: {key} must be an integer array; got {getattr(array, 'dtype', type(array))}")
        empty_ok = allow_empty_semantic and key == "semantic_prompt"
        if array.ndim != ndim or (rows is not None and array.shape[0] != rows) or (array.size == 0 and not empty_ok):
            shape = "(S,)" if ndim == 1 else f"({rows}, C)"
            raise InvalidVoice(f"{label}: {key} must have shape {shape} with C > 0; got {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= limits[key]):
            raise InvalidVoice(
                f"{label}: {key} tokens must be in 0..{limits[key] - 1}; got {array.min()}..{array.max()}"
            )
    coarse, fine = arrays["coarse_prompt"], arrays["fine_prompt"]
    if coarse.shape[1] != fine.shape[1] or not np.array_equal(fine[:N_COARSE], coarse):
        raise InvalidVoice(f"{label}: the first two rows of fine_prompt must equal coarse_prompt")


def save_presets(out: Path, prompts: Mapping[str, VoicePrompt]) -> int:
    """Write `prompts` into checkpoint folder `out` in the hub layout `PresetIndex` reads:
    speaker_embeddings_path.json plus one .npy per array; returns how many."""
    index: dict[str, Any] = {"repo_or_path": "."}
    for name, prompt in prompts.items():
        entry = {}
        for key, array in prompt.arrays().items():
            rel = f"speaker_embeddings/{name}_{key}.npy"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / rel, array, allow_pickle=False)
            entry[key] = rel
        index[name] = entry
    (out / "speaker_embeddings_path.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return len(prompts)


class PresetIndex:
    """The presets a checkpoint ships: `speaker_embeddings_path.json` and its `.npy` files.

    `source` is a hub id or a local folder, the same string the model was loaded from.
    """

    def __init__(self, source: str, local_files_only: bool = False) -> None:
        self.source = source
        self.local_files_only = local_files_only
        self._entries: dict[str, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._index())

    def __contains__(self, name: str) -> bool:
        return name in self._index()

    def load(self, name: str) -> VoicePrompt:
        entry = self._index()[name]
        arrays = {}
        for key in PROMPT_KEYS:
            if key not in entry:
                raise InvalidVoice(f"preset {name!r} of {self.source} has no {key}")
            arrays[key] = np.load(self._fetch(entry[key]), allow_pickle=False)
        return VoicePrompt.from_arrays(arrays, name=name)

    def _index(self) -> dict[str, dict[str, str]]:
        with self._lock:
            if self._entries is None:
                raw = json.loads(Path(self._fetch("speaker_embeddings_path.json")).read_text(encoding="utf-8"))
                self._entries = {k: v for k, v in raw.items() if k != "repo_or_path" and isinstance(v, dict)}
            return self._entries

    def _fetch(self, rel: str) -> str:
        # Paths come from the checkpoint's json: keep them inside the checkpoint.
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ModelUnavailable(f"{self.source}: preset path {rel!r} points outside the checkpoint")
        local = Path(self.source)
        if local.is_dir():
            path = local / rel
            if not path.is_file():
                raise model_unavailable(self.source, f"the folder has no {rel}")
            return str(path)
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(self.source, rel, local_files_only=self.local_files_only)
        except Exception as exc:  # hub errors have many types; all mean "cannot have it now"
            reason = f"cannot fetch {rel} ({str(exc).splitlines()[0]})"
            raise model_unavailable(self.source, reason) from exc


class VoiceLibrary:
    """Resolves a request's voice (int, preset name, custom name) to a validated prompt."""

    def __init__(self, presets: PresetIndex, voices_dir: Path | None, default_voice: str) -> None:
        self.presets = presets
        self.voices_dir = voices_dir
        self.default_voice = default_voice
        self._cache: dict[str, tuple[float, VoicePrompt]] = {}
        self._lock = threading.Lock()

    def resolve_name(self, voice: object) -> str:
        """Map a request's `voice_preset` to the canonical name of an existing voice."""
        if voice is None:
            voice = self.default_voice
        if isinstance(voice, bool) or not isinstance(voice, int | str):
            raise InvalidVoice(f"voice_preset must be an integer 0-9 or a name; got {voice!r}. {VALID_HINT}")
        if isinstance(voice, int):
            if not 0 <= voice <= 9:
                raise InvalidVoice(f"voice_preset must be an integer 0-9 or a name; got {voice}. {VALID_HINT}")
            voice = f"v2/en_speaker_{voice}"
        name = voice.strip()
        if name in self.presets:
            return name
        if f"v2/{name}" in self.presets:
            return f"v2/{name}"
        if self._custom_path(name) is not None:
            return name
        raise InvalidVoice(f"unknown voice {voice!r}: {VALID_HINT}")

    def load(self, name: str) -> VoicePrompt:
        """Load (cached) the prompt for a name returned by `resolve_name`."""
        custom = None if name in self.presets else self._custom_path(name)
        mtime = custom.stat().st_mtime if custom else 0.0
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] == mtime:
                return hit[1]
        prompt = VoicePrompt.from_npz(custom, name=name, strict=False) if custom else self.presets.load(name)
        with self._lock:
            self._cache[name] = (mtime, prompt)
        return prompt

    def record(self, name: str) -> VoiceRecord | None:
        """What an upload said of custom voice `name`; None for presets and unknown names."""
        path = None if name in self.presets else self._custom_path(name)
        return read_record(path) if path is not None else None

    def language(self, name: str) -> str | None:
        """The language a voice speaks: a preset's from its name, a custom voice's from its record."""
        record = self.record(name)
        return record.language if record is not None else language_of(name)

    def voice_file(self, name: str) -> Path | None:
        """The .npz of custom voice `name` (None for presets and unknown names)."""
        return None if name in self.presets else self._custom_path(name)

    def list_custom(self) -> list[str]:
        if self.voices_dir is None or not self.voices_dir.is_dir():
            return []
        return sorted(p.stem for p in self.voices_dir.glob("*.npz") if is_safe_name(p.stem) and voice_visible(p.stem))

    def _custom_path(self, name: str) -> Path | None:
        if self.voices_dir is None or not is_safe_name(name) or not voice_visible(name):
            return None
        path = self.voices_dir / f"{name}.npz"
        return path if path.is_file() else None
