"""A short spoken sample of each voice, made once and kept on disk (GET /voices/<name>/preview).

A preview's file is named from a hash of everything that makes it: the model, the voice's name and
its prompt (a custom voice's file, a preset's arrays), the sentence, the seed and the format. A voice
that changes (deleted and cloned again, its file replaced) hashes differently: its old preview is
removed when the new one is written, and when the voice is deleted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from barkserve.audio.encode import encode, get_format
from barkserve.audio.files import storage_errors
from barkserve.synthesizer import Synthesizer

PREVIEW_DIR = ".previews"  # inside voices_dir: not a *.npz, so never listed as a voice
PREVIEW_SEED = 1
PREVIEW_MAX_SEC = 4.0
PREVIEW_VERSION = "1"  # bump when the sentences or the way previews are made change
PREVIEW_FORMATS = ("mp3", "wav", "opus", "flac")
# One short sentence in each of Bark's preset languages.
SENTENCES = {
    "de": "Hallo! So klingt meine Stimme.",
    "en": "Hello! This is how my voice sounds.",
    "es": "¡Hola! Así suena mi voz.",
    "fr": "Bonjour ! Voici le son de ma voix.",
    "hi": "नमस्ते! मेरी आवाज़ ऐसी लगती है।",
    "it": "Ciao! Ecco come suona la mia voce.",
    "ja": "こんにちは。これが私の声です。",
    "ko": "안녕하세요! 제 목소리는 이렇습니다.",
    "pl": "Cześć! Tak brzmi mój głos.",
    "pt": "Olá! É assim que a minha voz soa.",
    "ru": "Привет! Так звучит мой голос.",
    "tr": "Merhaba! Sesim böyle duyuluyor.",
    "zh": "你好！这就是我的声音。",
}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def slug(voice: str) -> str:
    """A file-name-safe form of a voice name (`v2/en_speaker_1` -> `v2__en_speaker_1`)."""
    return voice.replace("/", "__")


def preview(synthesizer: Synthesizer, folder: Path, voice: object, model: object, fmt_name: str) -> tuple[Path, bool]:
    """The preview file of `voice` on `model`, made now if it is not on disk; and whether it was made now.

    Raises:
        InvalidVoice, InvalidModel: for an unknown voice or model (nothing is made).
    """
    fmt = get_format(fmt_name)
    model_name = synthesizer.registry.resolve(model)
    library = synthesizer.registry.voices(model_name)
    name = library.resolve_name(voice)
    text = SENTENCES.get(library.language(name) or "en", SENTENCES["en"])
    digest = hashlib.sha256("\0".join([PREVIEW_VERSION, model_name, name, text, str(PREVIEW_SEED), fmt.name]).encode())
    custom = library.voice_file(name)
    if custom is not None:
        digest.update(custom.read_bytes())
    else:
        for array in library.load(name).arrays().values():
            digest.update(array.tobytes())
    path = folder / f"{slug(name)}.{digest.hexdigest()[:20]}.{fmt.extension}"
    with _lock_of(path.name):
        if path.is_file():
            return path, False
        options = {"seed": PREVIEW_SEED, "max_duration_sec": PREVIEW_MAX_SEC}
        result = synthesizer.synthesize(text, voice=name, model=model_name, options=options)
        data = encode(result.audio, result.sample_rate, fmt)
        with storage_errors(folder):
            _write(path, data)
            forget(folder, name, keep=path)
    return path, True


def forget(folder: Path, voice: str, keep: Path | None = None) -> None:
    """Remove the previews of `voice` (all but `keep`)."""
    if not folder.is_dir():
        return
    for old in folder.glob(f"{slug(voice)}.*"):
        if old != keep and old.name.split(".")[0] == slug(voice):
            old.unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lock_of(key: str) -> threading.Lock:
    """One lock per preview file: two requests for a missing preview make it once."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())
