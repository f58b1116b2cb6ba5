"""Data in: the three forms, pairing problems by line, targets, split, resume, unusable recordings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from finetune_helpers import TEXTS, as_csv, as_folder, as_jsonl, espeak

from barkserve.errors import DatasetError
from barkserve.finetune.prepare import PrepareOptions, load_dataset, prepare_dataset
from barkserve.finetune.sources import read_entries


@pytest.mark.parametrize("form", ["ljspeech", "jsonl", "csv", "folder"])
def test_every_form_pairs_the_same_recordings_and_texts(speech_dir: Path, tmp_path: Path, form: str) -> None:
    make = {
        "ljspeech": lambda: speech_dir,
        "jsonl": lambda: as_jsonl(speech_dir, tmp_path / "d.jsonl"),
        "csv": lambda: as_csv(speech_dir, tmp_path / "d.csv"),
        "folder": lambda: as_folder(speech_dir, tmp_path / "f"),
    }
    entries = read_entries(make[form]())
    assert sorted(e.text for e in entries) == sorted(TEXTS)
    assert sorted(e.audio.stem for e in entries) == [f"LJ{i:03d}" for i in range(len(TEXTS))]


def _lj_missing_audio(root: Path) -> Path:
    (root / "wavs" / "LJ002.wav").unlink()
    return root


def _lj_extra_audio(root: Path) -> Path:
    shutil.copy(root / "wavs" / "LJ000.wav", root / "wavs" / "stray.wav")
    return root


def _jsonl_no_text(root: Path) -> Path:
    path = as_jsonl(root, root / "d.jsonl")
    lines = path.read_text().splitlines()
    lines[3] = json.dumps({"audio": json.loads(lines[3])["audio"]})
    path.write_text("\n".join(lines) + "\n")
    return path


def _folder_orphans(root: Path) -> Path:
    folder = as_folder(root, root / "f")
    (folder / "LJ001.txt").unlink()
    (folder / "lonely.txt").write_text("no audio here")
    return folder


@pytest.mark.parametrize(
    ("damage", "listed"),
    [
        (_lj_missing_audio, ["metadata.csv line 3: transcript 'LJ002' has no audio wavs/LJ002.wav"]),
        (_lj_extra_audio, ["wavs/stray.wav: audio without a transcript in metadata.csv"]),
        (_jsonl_no_text, ["d.jsonl line 4: audio"]),
        (_folder_orphans, ["LJ001.wav: audio without a transcript LJ001.txt", "lonely.txt: transcript without audio"]),
    ],
)
def test_unpaired_items_are_listed_by_line(speech_dir: Path, tmp_path: Path, damage: Any, listed: list[str]) -> None:
    root = shutil.copytree(speech_dir, tmp_path / "data")
    with pytest.raises(DatasetError) as info:
        read_entries(damage(root))
    for line in listed:
        assert line in info.value.message
    assert "cannot be paired" in info.value.message


def test_prepared_items_hold_the_three_targets_and_a_seeded_split(prepared: Path, encoders: Any) -> None:
    from barkserve.cloning.codec import semantic_length
    from barkserve.engine.base import text_inputs

    meta, train, heldout = load_dataset(prepared)
    assert (len(train), len(heldout)) == (4, 2)
    by_id = {item["id"]: item for item in meta["items"]}
    for item in train + heldout:
        entry = by_id[item.id]
        np.testing.assert_array_equal(item.text_ids, text_inputs(encoders.loaded.tokenizer, entry["text"]))
        assert item.codes.shape[0] == 8 and abs(item.codes.shape[1] - entry["seconds"] * 75) <= 1
        assert item.codes.min() >= 0 and item.codes.max() < 1024
        assert len(item.semantic) == semantic_length(item.codes.shape[1]) and item.semantic.max() < 10_000
    # The cue stays in the text the model reads.
    assert any("[laughs]" in item["text"] for item in meta["items"])
    assert meta["model"] == str(encoders.loaded.name) and meta["seed"] == 0


def test_a_rerun_resumes_without_encoding_again_and_keeps_the_split(
    prepared: Path, speech_dir: Path, encoders: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from barkserve.finetune import prepare as module

    out = shutil.copytree(prepared, tmp_path / "again")
    (out / "dataset.json").unlink()  # as if the first run had stopped before finishing

    def no_encoding(*args: Any) -> Any:
        raise AssertionError("an encoded item was encoded again")

    monkeypatch.setattr(module, "encode_entry", no_encoding)
    prepare_dataset(speech_dir, out, encoders, PrepareOptions(heldout=0.34))
    assert (
        json.loads((out / "dataset.json").read_text())["items"]
        == json.loads((prepared / "dataset.json").read_text())["items"]
    )


def test_the_split_depends_on_the_seed_only(prepared: Path, speech_dir: Path, encoders: Any, tmp_path: Path) -> None:
    def held(seed: int) -> set[str]:
        out = prepare_dataset(speech_dir, tmp_path / f"s{seed}", encoders, PrepareOptions(heldout=0.34, seed=seed))
        return {i["id"] for i in json.loads((out / "dataset.json").read_text())["items"] if i["split"] == "heldout"}

    # Copies share the encoded items, so only the split is made again.
    for seed in (0, 1, 2):
        shutil.copytree(prepared / "items", tmp_path / f"s{seed}" / "items")
        shutil.copy(prepared / "prepare.json", tmp_path / f"s{seed}" / "prepare.json")
    assert held(0) == {
        i["id"] for i in json.loads((prepared / "dataset.json").read_text())["items"] if i["split"] == "heldout"
    }
    assert len({frozenset(held(s)) for s in (0, 1, 2)}) > 1


def _silent(root: Path) -> str:
    import soundfile as sf

    sf.write(root / "wavs" / "LJ001.wav", np.zeros(22050 * 2, dtype=np.float32), 22050)
    return "metadata.csv line 2: the recording is silent"


def _too_long(root: Path) -> str:
    import soundfile as sf

    audio, rate = espeak(" ".join(TEXTS * 2), "en+m1")  # ~25 s
    sf.write(root / "wavs" / "LJ004.wav", audio, rate)
    return "metadata.csv line 5: "


def _unreadable(root: Path) -> str:
    (root / "wavs" / "LJ003.wav").write_bytes(b"RIFF0000WAVEjunk")
    return "metadata.csv line 4: the wav file could not be decoded"


@pytest.mark.parametrize("damage", [_silent, _too_long, _unreadable])
def test_unusable_recordings_are_listed_and_nothing_is_finished(
    speech_dir: Path, encoders: Any, tmp_path: Path, damage: Any
) -> None:
    root = shutil.copytree(speech_dir, tmp_path / "data")
    listed = damage(root)
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as info:
        prepare_dataset(root, out, encoders, PrepareOptions(heldout=0.34))
    assert listed in info.value.message and "1 recording(s) cannot be used" in info.value.message
    assert not (out / "dataset.json").exists()
    # --skip-bad leaves it out and writes it down.
    prepare_dataset(root, out, encoders, PrepareOptions(heldout=0.34, skip_bad=True))
    meta = json.loads((out / "dataset.json").read_text())
    assert len(meta["items"]) == len(TEXTS) - 1 and meta["skipped"][0].startswith(listed.split(": the")[0])


def test_too_long_clips_say_how_long_and_the_limit(speech_dir: Path, encoders: Any, tmp_path: Path) -> None:
    root = shutil.copytree(speech_dir, tmp_path / "data")
    _too_long(root)
    with pytest.raises(DatasetError, match=r"line 5: \d+\.\d s long, over Bark's window of 14 s"):
        prepare_dataset(root, tmp_path / "out", encoders)


def test_too_few_items_for_a_split(speech_dir: Path, encoders: Any, tmp_path: Path) -> None:
    root = shutil.copytree(speech_dir, tmp_path / "data")
    (root / "metadata.csv").write_text((root / "metadata.csv").read_text().splitlines()[0] + "\n")
    for wav in (root / "wavs").glob("*.wav"):
        if wav.name != "LJ000.wav":
            wav.unlink()
    with pytest.raises(DatasetError, match=r"1 usable item.*at least 2"):
        prepare_dataset(root, tmp_path / "out", encoders)


def test_a_folder_prepared_with_other_settings_is_refused(prepared: Path, speech_dir: Path, encoders: Any) -> None:
    with pytest.raises(DatasetError, match="Use a new --out folder"):
        prepare_dataset(speech_dir, prepared, encoders, PrepareOptions(max_seconds=10.0))
