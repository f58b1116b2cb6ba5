"""Training data for quantizers: (semantic tokens, audio) pairs made by Bark, and their HuBERT features.

Layout of a dataset folder:
    manifest.tsv     fairseq style: first line the root folder, then `audio/<id>.wav<TAB>num_samples`
    audio/<id>.wav   Bark's audio at its sample rate (24 kHz)
    tokens/<id>.npy  the semantic tokens (S,) int64 that audio was generated from
    meta.json        model, sample rate, options
    features/<hubert>-L<layer>/<id>.npy   cached HuBERT features (T, D) float32
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.audio.dsp import resample
from barkserve.bark import MAX_SEMANTIC_TOKENS, MAX_TEXT_TOKENS, SEMANTIC_VOCAB
from barkserve.cloning import audio_in
from barkserve.errors import DatasetError


@dataclass(frozen=True)
class DatasetOptions:
    """How `make_dataset` samples Bark."""

    n: int = 1000  # utterances wanted in the folder (existing ones count: resumable)
    batch_size: int = 8
    seed: int = 0
    temperature: float = 0.7
    max_semantic_tokens: int = MAX_SEMANTIC_TOKENS  # Bark's limit: ~15 s
    min_semantic_tokens: int = 10  # shorter generations are skipped and retried with the next seed

    def __post_init__(self) -> None:
        if self.n < 1 or self.batch_size < 1 or not 1 <= self.max_semantic_tokens <= MAX_SEMANTIC_TOKENS:
            raise DatasetError(f"n and batch_size must be >= 1, max_semantic_tokens 1..{MAX_SEMANTIC_TOKENS}")


def read_texts(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read texts from {path}: {exc}") from exc
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise DatasetError(f"{path} holds no text; give one sentence per line")
    return texts


def item_id(index: int) -> str:
    return f"{index:06d}"


def is_complete(out: Path, index: int) -> bool:
    return (out / "tokens" / f"{item_id(index)}.npy").is_file() and (out / "audio" / f"{item_id(index)}.wav").is_file()


def generate_batch(loaded: Any, texts: Sequence[str], seed: int, options: DatasetOptions) -> list[tuple[Any, Any]]:
    """Bark on a batch of texts (no voice prompt): [(semantic tokens (S,), audio (samples,))] per text."""
    import torch
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkFineGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    from barkserve.engine.base import text_inputs

    model, device, gc = loaded.model, loaded.device, loaded.model.generation_config
    coarse_config = BarkCoarseGenerationConfig(**gc.coarse_acoustics_config)
    configs: dict[str, Any] = {
        "semantic_generation_config": BarkSemanticGenerationConfig(**gc.semantic_config),
        "coarse_generation_config": coarse_config,
    }
    n = MAX_TEXT_TOKENS
    ids = [torch.as_tensor(text_inputs(loaded.tokenizer, t)[:n]) for t in texts]
    input_ids = torch.stack([torch.nn.functional.pad(i, (0, n - len(i))) for i in ids]).to(device)  # [B, 256]
    mask = torch.stack([torch.arange(n) < len(i) for i in ids]).long().to(device)
    sample = {"do_sample": options.temperature > 0, "temperature": options.temperature or None}
    with torch.inference_mode():
        torch.manual_seed(seed)
        semantic = model.semantic.generate(
            input_ids,
            attention_mask=mask,
            max_new_tokens=options.max_semantic_tokens,
            semantic_generation_config=configs["semantic_generation_config"],
            **sample,
        )  # [B, S_max], end-of-speech and padding >= 10,000
        # The coarse stage rewrites padding in place; keep our copy intact.
        coarse, lengths = model.coarse_acoustics.generate(
            semantic.clone(), codebook_size=gc.codebook_size, return_output_lengths=True, **configs, **sample
        )
        fine = model.fine_acoustics.generate(
            coarse,
            codebook_size=gc.codebook_size,
            temperature=options.temperature or None,
            fine_generation_config=BarkFineGenerationConfig(**gc.fine_acoustics_config),
            **configs,
        )  # [B, 8, C]
        frames = lengths // coarse_config.n_coarse_codebooks
        audio = model.codec_decode(fine, frames)  # B tensors [samples]
    out = []
    for row, wav in zip(semantic.cpu().numpy(), audio, strict=True):
        end = np.flatnonzero(row >= SEMANTIC_VOCAB)  # end-of-speech and padding
        tokens = row[: end[0] if end.size else len(row)].astype(np.int64)
        out.append((tokens, wav.float().cpu().numpy().reshape(-1)))
    return out


# A batch of the loop: its item indices and its seed. Its audio depends on nothing else (batch rows
# share one random stream), so the loop's order of batches is what makes a dataset reproducible.
BatchKey = tuple[tuple[int, ...], int]
BatchSource = Callable[[BatchKey, list[BatchKey]], list[tuple[Any, Any]]]


def batch_seed(options: DatasetOptions, first: int, attempt: int) -> int:
    return options.seed * 1_000_003 + first * 101 + attempt


def upcoming(todo: Sequence[int], options: DatasetOptions, attempt: int) -> list[BatchKey]:
    """The batches the loop makes from `todo` on, if every item of each is long enough (the first is next)."""
    size = options.batch_size
    chunks = [tuple(todo[k : k + size]) for k in range(0, len(todo), size)]
    return [(chunk, batch_seed(options, chunk[0], attempt if k == 0 else 0)) for k, chunk in enumerate(chunks)]


def local_batches(loaded: Any, texts: Sequence[str], options: DatasetOptions) -> BatchSource:
    """Each batch generated here, when it is due."""

    def make(key: BatchKey, ahead: list[BatchKey]) -> list[tuple[Any, Any]]:
        return generate_batch(loaded, [texts[i % len(texts)] for i in key[0]], key[1], options)

    return make


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)  # a crash leaves no half-written item


def _save_item(out: Path, index: int, tokens: np.ndarray, audio: np.ndarray, rate: int) -> None:
    import soundfile as sf

    # Tokens first: an item counts as complete once its audio exists.
    _write_atomic(out / "tokens" / f"{item_id(index)}.npy", lambda p: _save_npy(p, tokens))
    clipped = np.clip(audio, -1.0, 1.0)
    _write_atomic(out / "audio" / f"{item_id(index)}.wav", lambda p: sf.write(p, clipped, rate, format="WAV"))


def make_dataset(
    loaded: Any,
    texts: Sequence[str],
    out_dir: str | Path,
    options: DatasetOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    batches: BatchSource | None = None,
) -> Path:
    """Fill `out_dir` with `options.n` Bark (tokens, audio) pairs; a rerun resumes where it stopped.

    Args:
        loaded: The `LoadedModel` to sample (with `batches`, anything with its `name` and `sample_rate`).
        texts: Texts to speak, used in turn.
        out_dir: Dataset folder (created if missing).
        options: Count, batch size, seed, sampling.
        on_progress: Called with the number of items finished since the last call.
        batches: Where each batch is generated (`scale.dataset.RayBatches`); None: `generate_batch` here.
            It is given the batch to make now and those planned after it, which it may start early.

    Returns:
        The folder, with its manifest written.
    """
    options = options or DatasetOptions()
    out = Path(out_dir)
    for sub in ("audio", "tokens"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _check_meta(out, {"model": loaded.name, "sample_rate": loaded.sample_rate, **asdict(options)})
    todo = [i for i in range(options.n) if not is_complete(out, i)]
    if on_progress and len(todo) < options.n:
        on_progress(options.n - len(todo))
    source = batches or local_batches(loaded, texts, options)
    attempt = 0
    while todo:
        planned = upcoming(todo, options, attempt)
        batch = list(planned[0][0])
        results = source(planned[0], planned[1:])
        done = [i for i, (tok, wav) in zip(batch, results, strict=True) if len(tok) >= options.min_semantic_tokens]
        for i, (tokens, audio) in zip(batch, results, strict=True):
            if i in done:
                _save_item(out, i, tokens, audio, loaded.sample_rate)
        # An item Bark ended too early is retried with another seed, a bounded number of times.
        attempt = 0 if done else attempt + 1
        if attempt > 5:
            raise DatasetError(f"Bark keeps ending items {batch} before {options.min_semantic_tokens} tokens")
        todo = [i for i in todo if i not in done]
        if on_progress and done:
            on_progress(len(done))
        write_manifest(out)
    write_manifest(out)
    return out


def _check_meta(out: Path, meta: dict[str, Any]) -> None:
    path = out / "meta.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("model") != meta["model"] or old.get("sample_rate") != meta["sample_rate"]:
            raise DatasetError(f"{out} was made with {old.get('model')!r}; resume it with that model")
    path.write_text(json.dumps(meta, indent=1), encoding="utf-8")


def write_manifest(out: Path) -> Path:
    """Rewrite manifest.tsv from the complete items on disk."""
    import soundfile as sf

    lines = [str(out.resolve())]
    for wav in sorted((out / "audio").glob("*.wav")):
        if (out / "tokens" / f"{wav.stem}.npy").is_file():
            lines.append(f"audio/{wav.name}\t{sf.info(wav).frames}")
    _write_atomic(out / "manifest.tsv", lambda p: p.write_text("\n".join(lines) + "\n", encoding="utf-8"))
    return out / "manifest.tsv"


def read_manifest(dataset_dir: str | Path) -> list[tuple[Path, Path]]:
    """(audio path, tokens path) of every item listed in the manifest."""
    root = Path(dataset_dir)
    manifest = root / "manifest.tsv"
    if not manifest.is_file():
        raise DatasetError(f"{root} has no manifest.tsv; make one with `barkserve quantizer make-dataset`")
    lines = manifest.read_text(encoding="utf-8").splitlines()[1:]
    items = []
    for line in lines:
        rel = Path(line.split("\t")[0])
        # The manifest's paths stay inside the dataset folder.
        if rel.is_absolute() or ".." in rel.parts:
            raise DatasetError(f"{manifest}: path {rel} points outside the dataset")
        items.append((root / rel, root / "tokens" / f"{rel.stem}.npy"))
    if not items:
        raise DatasetError(f"{manifest} lists no items")
    return items


def features_dir(dataset_dir: Path, hubert: str, layer: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", hubert).strip("-")[-60:]
    return dataset_dir / "features" / f"{slug}-L{layer}"


def load_pairs(
    dataset_dir: str | Path, featurizer: Any, on_progress: Callable[[int], None] | None = None
) -> list[tuple[Any, Any]]:
    """Aligned (features [T, D], tokens [T]) of every item, computing and caching features as needed."""
    import soundfile as sf
    import torch

    from barkserve.cloning.train import align

    root = Path(dataset_dir)
    cache = features_dir(root, featurizer.source, featurizer.layer)
    cache.mkdir(parents=True, exist_ok=True)
    pairs = []
    for wav_path, tok_path in read_manifest(root):
        cached = cache / f"{wav_path.stem}.npy"
        if cached.is_file():
            features = torch.from_numpy(np.load(cached))
        else:
            audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
            mono = audio_in.normalize_loudness(audio.mean(axis=1), rate)  # as clone_voice hears it
            features = featurizer.features(resample(mono, rate, audio_in.HUBERT_RATE))
            _write_atomic(cached, functools.partial(_save_npy, array=features.numpy()))
        pairs.append(align(features, np.load(tok_path)))
        if on_progress:
            on_progress(1)
    return pairs
