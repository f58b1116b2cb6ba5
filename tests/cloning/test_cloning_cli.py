"""`barkserve clone` and `barkserve quantizer make-dataset|train|eval` through click, on tiny checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from cloning_helpers import TINY_LAYER, write_audio

from barkserve.cli.clone import clone, quantizer
from barkserve.cloning.quantizer import load_quantizer
from barkserve.voices import VoicePrompt


def model_flags(model_dir: Path) -> list[str]:
    return ["--model", str(model_dir), "--device", "cpu", "--offline"]


def test_clone_command(tiny_model_dir: Path, tiny_hubert_dir: Path, tiny_quantizer: Path, tmp_path: Path) -> None:
    ref = write_audio(tmp_path / "ref.mp3", 2.5)
    voices = tmp_path / "voices"
    args = [str(ref), "--name", "cli-voice", "--voices-dir", str(voices), "--quantizer", str(tiny_quantizer),
            "--hubert", str(tiny_hubert_dir), "--layer", str(TINY_LAYER), *model_flags(tiny_model_dir)]  # fmt: skip
    result = CliRunner().invoke(clone, args)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["name"] == "cli-voice" and answer["semantic"] is True
    prompt = VoicePrompt.from_npz(voices / "cli-voice.npz")
    assert prompt.fine.shape[1] == answer["codec_frames"] and len(prompt.semantic) == answer["semantic_tokens"]
    again = CliRunner().invoke(clone, args)
    assert again.exit_code == 1 and "exists" in again.output


@pytest.fixture(scope="module")
def dataset_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    texts = root / "texts.txt"
    texts.write_text("Hello there.\n\nA second sentence, a little longer.\n", encoding="utf-8")
    out = root / "ds"
    common = ["--texts", str(texts), "--out", str(out), "--batch-size", "2", "--max-semantic-tokens", "16"]
    result = CliRunner().invoke(quantizer, ["make-dataset", *common, "-n", "2", *model_flags(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    first = {p: p.stat().st_mtime_ns for p in (out / "audio").iterdir()}
    # Resume: a bigger -n only generates what is missing.
    result = CliRunner().invoke(quantizer, ["make-dataset", *common, "-n", "3", *model_flags(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())
    return out


def test_make_dataset_writes_pairs_and_a_fairseq_manifest(dataset_dir: Path) -> None:
    lines = (dataset_dir / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == str(dataset_dir.resolve())
    assert [line.split("\t")[0] for line in lines[1:]] == [f"audio/00000{i}.wav" for i in range(3)]
    for line in lines[1:]:
        rel, n_samples = line.split("\t")
        audio, rate = sf.read(dataset_dir / rel)
        tokens = np.load(dataset_dir / "tokens" / f"{Path(rel).stem}.npy")
        assert rate == 24_000 and len(audio) == int(n_samples)
        assert 10 <= len(tokens) <= 16 and tokens.max() < 10_000 and tokens.dtype == np.int64
        # Bark's coarse stage makes floor(S x 75 / 49.9) frames of 320 samples from S tokens.
        assert len(audio) == int(np.floor(len(tokens) * 75 / 49.9)) * 320


def test_train_then_eval(dataset_dir: Path, tiny_hubert_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    hubert = ["--hubert", str(tiny_hubert_dir), "--layer", str(TINY_LAYER), "--device", "cpu"]
    checkpoint = tmp_path / "q.pt"
    args = ["train", str(dataset_dir), "--method", "kmeans", "--out", str(checkpoint), "--epochs", "2", *hubert]
    result = runner.invoke(quantizer, args)
    assert result.exit_code == 0, result.output
    assert "epoch 2: loss" in result.output and "held-out accuracy" in result.output
    cached = {p: p.stat().st_mtime_ns for p in (dataset_dir / "features").rglob("*.npy")}
    assert len(cached) == 3
    saved = load_quantizer(checkpoint)
    assert (saved.info.method, saved.info.hubert, saved.info.layer) == ("kmeans", str(tiny_hubert_dir), TINY_LAYER)

    result = runner.invoke(quantizer, ["eval", str(checkpoint), str(dataset_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["method"] == "kmeans" and report["utterances"] == 3
    # The reported figure is the fraction of frames whose predicted token is the aligned one, counted here.
    from barkserve.cloning.dataset import load_pairs
    from barkserve.cloning.hubert import HubertFeaturizer

    pairs = load_pairs(dataset_dir, HubertFeaturizer(str(tiny_hubert_dir), TINY_LAYER, "cpu", local_files_only=True))
    right = sum(int((saved.predict(f) == t.numpy()).sum()) for f, t in pairs)
    assert report["accuracy"] == round(right / sum(len(t) for _, t in pairs), 4)
    # Features came from the cache: the files were not rewritten.
    assert {p: p.stat().st_mtime_ns for p in cached} == cached

    wrong = runner.invoke(quantizer, ["eval", str(checkpoint), str(dataset_dir), "--layer", "3", "--device", "cpu"])
    assert wrong.exit_code == 1 and "layer 2, not 3" in wrong.output
