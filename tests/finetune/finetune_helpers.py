"""Speech for the fine-tuning tests: espeak-ng clips written as the data forms people have."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from support import missing

TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello there, how are you today?",
    "I like green apples [laughs] very much.",
    "The rain in Spain stays mainly in the plain.",
    "Six slippery snails slid slowly seaward.",
    "Bark is a text to speech model.",
)

# Few steps at a high learning rate: enough for tiny random models to learn the held-out speech.
QUICK = {"batch_size": 2, "learning_rate": 3e-3, "warmup_steps": 1, "lora_rank": 4, "device": "cpu"}


def espeak(text: str, voice: str = "en+m1") -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng: mono float32 samples and their rate."""
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, int(rate)


def write_ljspeech(root: Path, texts: tuple[str, ...] = TEXTS) -> Path:
    """An LJSpeech folder: metadata.csv (`id|text|text`) and wavs/<id>.wav."""
    import soundfile as sf

    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        audio, rate = espeak(text, "en+m1" if i % 2 else "en+f3")
        sf.write(root / "wavs" / f"LJ{i:03d}.wav", audio, rate)
        lines.append(f"LJ{i:03d}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def as_jsonl(lj: Path, out: Path) -> Path:
    rows = [line.split("|") for line in (lj / "metadata.csv").read_text(encoding="utf-8").splitlines()]
    items = [{"audio": str(lj / "wavs" / f"{r[0]}.wav"), "text": r[1], "speaker": r[0][-1]} for r in rows]
    out.write_text("\n".join(json.dumps(item) for item in items) + "\n", encoding="utf-8")
    return out


def as_csv(lj: Path, out: Path) -> Path:
    import csv

    rows = [line.split("|") for line in (lj / "metadata.csv").read_text(encoding="utf-8").splitlines()]
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["audio", "text"])
        writer.writerows([[str(lj / "wavs" / f"{r[0]}.wav"), r[1]] for r in rows])
    return out


def as_folder(lj: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for line in (lj / "metadata.csv").read_text(encoding="utf-8").splitlines():
        name, text = line.split("|")[:2]
        shutil.copy(lj / "wavs" / f"{name}.wav", out / f"{name}.wav")
        (out / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    return out
