"""Recordings in, training items out: text ids, semantic tokens (HuBERT + quantizer), EnCodec codes.

Layout of a prepared folder:
    prepare.json       what made it: base model, HuBERT, layer, quantizer, options (a rerun must match)
    items/<key>.npz    text_ids (T,), semantic (S,), codes (8, C) int64; <key> hashes audio path and text
    dataset.json       the items with their text, length and split (train | heldout); written last,
                       so a folder without it is unfinished (rerun `prepare` to resume)
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.audio.files import atomic_write
from barkserve.bark import MAX_SEMANTIC_TOKENS, MAX_TEXT_TOKENS
from barkserve.cloning import audio_in, codec
from barkserve.cloning.clone import semantic_tokens
from barkserve.errors import DatasetError, InvalidAudio
from barkserve.finetune.sources import Entry, problems_error, read_entries

FORMAT = "barkserve-finetune-data"
SPLITS = ("file", "speaker")
# The semantic stage reads 256 text ids and writes at most 768 tokens (~15.4 s) before its end token.
MAX_SECONDS = 14.0
# A local recording may be larger than an upload; a 14 s clip is a few MB even at 96 kHz.
MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class PrepareOptions:
    """How `prepare_dataset` checks and splits the data."""

    heldout: float = 0.1  # share of items (or speakers' items) kept out of training
    split_by: str = "file"  # file | speaker: held-out items are whole speakers with "speaker"
    seed: int = 0  # of the held-out split
    max_seconds: float = MAX_SECONDS  # longer clips (after trimming silence) are refused
    skip_bad: bool = False  # leave out unusable recordings (listed in dataset.json) instead of failing

    def __post_init__(self) -> None:
        if not 0 < self.heldout < 1:
            raise DatasetError(f"heldout must be a share between 0 and 1, such as 0.1; got {self.heldout}")
        if self.split_by not in SPLITS:
            raise DatasetError(f"split_by must be one of {SPLITS}; got {self.split_by!r}")
        if not audio_in.MIN_SECONDS < self.max_seconds <= MAX_SECONDS + 1:
            raise DatasetError(f"max_seconds must be in {audio_in.MIN_SECONDS:g}..{MAX_SECONDS + 1:g}")


@dataclass(frozen=True)
class Encoders:
    """What turns a recording into targets: the Bark checkpoint (tokenizer, codec), HuBERT and a quantizer."""

    loaded: Any  # models.LoadedModel
    featurizer: Any  # cloning.hubert.HubertFeaturizer
    quantizer: Any  # cloning.quantizer.Quantizer

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.loaded.name,
            "hubert": self.featurizer.source,
            "layer": self.featurizer.layer,
            "quantizer": self.quantizer.info.method,
        }


def item_key(entry: Entry) -> str:
    return hashlib.sha1(f"{entry.audio.resolve()}\n{entry.text}".encode()).hexdigest()[:16]


def encode_entry(entry: Entry, encoders: Encoders, max_seconds: float) -> tuple[dict[str, np.ndarray], float]:
    """The three targets of one recording and its length in seconds.

    Raises:
        InvalidAudio: Unreadable, silent or too short (from `audio_in`).
        DatasetError: Longer than `max_seconds`, or a transcript longer than Bark reads.
    """
    from barkserve.engine.base import text_inputs

    text_ids = text_inputs(encoders.loaded.tokenizer, entry.text)
    if not 0 < len(text_ids) <= MAX_TEXT_TOKENS:
        raise DatasetError(f"the transcript is {len(text_ids)} tokens; Bark reads 1..{MAX_TEXT_TOKENS}: split it")
    reference = audio_in.prepare_reference(entry.audio, max_seconds, MAX_FILE_BYTES)
    if reference.trimmed:
        raise DatasetError(
            f"{reference.original_sec:.1f} s long, over Bark's window of {max_seconds:g} s of speech; "
            "split it into shorter clips with their own transcripts"
        )
    codes = codec.encode_codes(encoders.loaded.model.codec_model, reference.wav24)  # [8, C]
    n_semantic = min(codec.semantic_length(codes.shape[1]), MAX_SEMANTIC_TOKENS - 1)
    semantic = semantic_tokens(encoders.featurizer, encoders.quantizer, reference.wav16, n_semantic)
    arrays = {"text_ids": text_ids, "semantic": semantic.astype(np.int64), "codes": codes.astype(np.int64)}
    return arrays, reference.duration_sec


def prepare_dataset(
    data: str | Path,
    out_dir: str | Path,
    encoders: Encoders,
    options: PrepareOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Turn recordings with transcripts into training items and a seeded held-out split.

    A rerun resumes: items already encoded are kept. Every unusable recording is listed at the end
    (by line), and then nothing is marked finished unless `skip_bad` leaves them out.

    Args:
        data: An LJSpeech folder, a .jsonl or .csv of audio,text, or a folder of audio + .txt files.
        out_dir: The prepared folder (created if missing).
        encoders: Tokenizer and codec (the base checkpoint), HuBERT and quantizer.
        options: Split, length limit, whether to skip bad recordings.
        on_progress: Called with 1 per recording handled.

    Returns:
        The folder, with its dataset.json written.

    Raises:
        DatasetError: Unpaired items, unusable recordings, a folder made with other encoders, too few items.
    """
    options = options or PrepareOptions()
    max_seconds = options.max_seconds
    return write_dataset(
        data,
        out_dir,
        encoders.describe(),
        lambda todo: (try_encode(entry, encoders, max_seconds) for entry in todo),
        options,
        on_progress,
    )


# What encoding one recording gave: its targets and seconds, or why it cannot be used.
Encoded = tuple[dict[str, np.ndarray], float] | str


def try_encode(entry: Entry, encoders: Encoders, max_seconds: float) -> Encoded:
    """`encode_entry`, with an unusable recording's problem returned (as its message) instead of raised."""
    try:
        return encode_entry(entry, encoders, max_seconds)
    except (DatasetError, InvalidAudio) as exc:
        return exc.message


def write_dataset(
    data: str | Path,
    out_dir: str | Path,
    made_with: dict[str, Any],
    encode_all: Callable[[list[Entry]], Iterable[Encoded]],
    options: PrepareOptions,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """`prepare_dataset` with the encoding given: `encode_all` gets the recordings not encoded yet
    (one per item) and yields their `Encoded`, in order, as they come (here or on Ray actors).
    Items are written atomically as they come; the split and dataset.json as `prepare_dataset` says."""
    out = Path(out_dir)
    entries = read_entries(data)
    (out / "items").mkdir(parents=True, exist_ok=True)
    _check_made_with(out, {**made_with, "max_seconds": options.max_seconds})
    todo: dict[str, Entry] = {}  # in the order of first listing; a recording listed twice is encoded once
    for entry in entries:
        key = item_key(entry)
        if key not in todo and not _item_path(out, key).is_file():
            todo[key] = entry
    results = zip(todo, encode_all(list(todo.values())), strict=True)
    unusable: dict[str, str] = {}  # key -> problem, so a repeated recording is encoded once
    items, problems = [], []
    for entry in entries:
        key = item_key(entry)
        path = _item_path(out, key)
        if key in todo and key not in unusable and not path.is_file():
            done, result = next(results)
            assert done == key, "encode_all yielded out of order"
            if isinstance(result, str):
                unusable[key] = result
            else:
                _write_item(path, *result)
        if key in unusable:
            problems.append(f"{entry.where}: {unusable[key]}")
        else:
            seconds = _cached_seconds(path)
            items.append({"id": key, "where": entry.where, "text": entry.text, "speaker": entry.speaker,
                          "seconds": round(seconds, 3)})  # fmt: skip
        if on_progress:
            on_progress(1)
    if problems and not options.skip_bad:
        raise problems_error(
            f"{len(problems)} recording(s) cannot be used",
            problems,
            "Fix or remove them, or pass --skip-bad to leave them out; the items already encoded are kept.",
        )
    split = heldout_split(items, options)
    meta = {"format": FORMAT, "version": 1, **made_with, **asdict(options), "skipped": problems}
    meta["items"] = [{**item, "split": "heldout" if item["id"] in split else "train"} for item in items]
    atomic_write(out / "dataset.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return out


def _item_path(out: Path, key: str) -> Path:
    return out / "items" / f"{key}.npz"


def _write_item(path: Path, arrays: dict[str, np.ndarray], seconds: float) -> None:
    def write(f: Any) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, seconds=np.float64(seconds), **arrays)  # type: ignore[arg-type]
        f.write(buffer.getvalue())

    atomic_write(path, write)


def _cached_seconds(path: Path) -> float:
    with np.load(path) as npz:
        return float(npz["seconds"])


def _check_made_with(out: Path, made_with: dict[str, Any]) -> None:
    path = out / "prepare.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != made_with:
            raise DatasetError(
                f"{out} was prepared with {old}; now {made_with}. Use a new --out folder for other encoders"
            )
    else:
        atomic_write(path, lambda f: f.write(json.dumps(made_with, indent=1).encode()))


def heldout_split(items: list[dict[str, Any]], options: PrepareOptions) -> set[str]:
    """Ids of the held-out items: a seeded share of the files, or of the speakers with `split_by="speaker"`."""
    rng = np.random.default_rng(options.seed)
    if len(items) < 2:
        raise DatasetError(
            f"{len(items)} usable item(s); a held-out split needs at least 2 (fine-tuning wants hundreds)"
        )
    want = max(1, round(options.heldout * len(items)))
    if options.split_by == "file":
        order = rng.permutation(len(items))
        return {items[i]["id"] for i in order[: min(want, len(items) - 1)]}
    speakers = sorted({item["speaker"] for item in items})
    if len(speakers) < 2:
        raise DatasetError(
            f"split by speaker needs at least 2 speakers; found {speakers}. Give a 'speaker' column "
            "(JSONL/CSV) or one subfolder per speaker, or split by file"
        )
    held: set[str] = set()
    for speaker in rng.permutation(speakers)[:-1]:  # at least one speaker stays in training
        if len(held) >= want:
            break
        held |= {item["id"] for item in items if item["speaker"] == speaker}
    return held


@dataclass(frozen=True, eq=False)
class Item:
    """A prepared item's targets."""

    id: str
    text_ids: np.ndarray  # (T,)
    semantic: np.ndarray  # (S,)
    codes: np.ndarray  # (8, C)


def load_dataset(dataset_dir: str | Path) -> tuple[dict[str, Any], list[Item], list[Item]]:
    """(dataset.json, train items, held-out items) of a prepared folder."""
    root = Path(dataset_dir)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{root} has no dataset.json; make it (or finish it) with `barkserve finetune prepare`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_path} is not a barkserve fine-tuning dataset")
    splits: dict[str, list[Item]] = {"train": [], "heldout": []}
    for entry in meta["items"]:
        try:
            with np.load(root / "items" / f"{entry['id']}.npz") as npz:
                item = Item(entry["id"], npz["text_ids"], npz["semantic"], npz["codes"])
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"{root}: item {entry['id']} is unreadable ({exc}); rerun prepare") from exc
        splits[entry["split"]].append(item)
    return meta, splits["train"], splits["heldout"]


def load_encoders(
    model: str,
    quantizer: str | Path,
    hubert: str | None = None,
    layer: int | None = None,
    device: str = "auto",
    offline: bool = False,
) -> Encoders:
    """Load the base checkpoint, and HuBERT + quantizer as voice cloning loads them (checked to match).

    Raises:
        ModelUnavailable: A model cannot be loaded.
        QuantizerError: The quantizer does not read this HuBERT's features.
    """
    from barkserve.cloning.clone import Cloner
    from barkserve.config import ServerConfig
    from barkserve.models import load_model, pick_device

    config = ServerConfig(model=model, device=device, dtype="float32", offline=offline)
    loaded = load_model(model, config)
    cloner = Cloner(
        voices_dir=Path("."),  # nothing is saved: only its HuBERT + quantizer loading is used
        codec_model=lambda: loaded.model.codec_model,
        is_preset=lambda _: False,
        hubert=hubert,
        layer=layer,
        quantizer_path=Path(quantizer),
        device=pick_device(device),
        local_files_only=offline,
    )
    semantic = cloner.semantic_models()
    assert semantic is not None  # a quantizer path was given
    return Encoders(loaded, *semantic)


__all__ = ["Encoders", "Item", "PrepareOptions", "load_dataset", "load_encoders", "prepare_dataset"]
