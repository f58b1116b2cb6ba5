"""End to end through the CLI: prepare -> train -> merge -> served by /synthesize -> audio; and the same
run evaluated -> promoted -> served by the adapter's name -> audio."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from barkserve.cli import main
from support import server_config


@pytest.mark.slow
def test_recordings_become_a_served_model(
    speech_dir: Path,
    tiny_model_dir: Path,
    tiny_quantizer: Path,
    tiny_scorer_models: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    import soundfile as sf

    from barkserve.server import create_app

    runner = CliRunner()
    common = ["--device", "cpu", "--offline"]
    prepared = runner.invoke(main, ["finetune", "prepare", str(speech_dir), "--out", str(tmp_path / "data"),
                                    "--model", str(tiny_model_dir), "--quantizer", str(tiny_quantizer),
                                    "--heldout", "0.34", *common])  # fmt: skip
    assert prepared.exit_code == 0, prepared.output
    assert json.loads(prepared.stdout.splitlines()[-1]) == {
        "out": str(tmp_path / "data"),
        "train": 4,
        "heldout": 2,
        "skipped": 0,
    }
    trained = runner.invoke(main, ["finetune", "train", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                   "--stages", "semantic,coarse", "--lora", "2", "--steps", "2", "--eval-every", "2",
                                   "--batch-size", "2", "--lr", "5e-2", "--warmup", "1", *common])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout.splitlines()[-1])
    assert summary["step"] == 2 and summary["best_step"] == 2 and set(summary["best_heldout"]) == {"semantic", "coarse"}
    assert "train: 100%" in trained.stderr and "2/2" in trained.stderr  # the progress bar, on stderr
    assert "step 2: held-out semantic=" in trained.stderr
    merged = runner.invoke(
        main, ["finetune", "merge", str(tmp_path / "run"), "--out", str(tmp_path / "model"), "--offline"]
    )
    assert merged.exit_code == 0, merged.output

    # Served beside the base through the allowlist, named by its folder.
    model = str(tmp_path / "model")
    config = server_config(tiny_model_dir, tmp_path, models=(str(tiny_model_dir), model))
    client = create_app(config, start_jobs=False).test_client()
    response = client.post(
        "/synthesize", json={"text": "Hello there.", "model": model, "max_duration_sec": 0.2, "seed": 1}
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    wav = client.get(f"/audio/{response.get_json()['filename']}")
    audio, rate = sf.read(io.BytesIO(wav.data))
    assert rate == 24_000 and len(audio) > 0
    states = {m["id"]: m["state"] for m in client.get("/models").get_json()["models"]}
    assert states["model"] == "loaded"  # the fine-tune (served by its folder's name) answered, loaded

    # The same run: evaluated against the base, promoted (only as the verdict allows), served by name.
    asr, speaker = tiny_scorer_models
    run = str(tmp_path / "run")
    evaluated = runner.invoke(main, ["finetune", "eval", run, "--asr-model", str(asr), "--speaker-model", str(speaker),
                                     "--max-duration", "0.3", "--bootstrap", "100", *common])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    verdict = json.loads((tmp_path / "run" / "eval" / "verdict.json").read_text())
    assert json.loads(evaluated.stdout.splitlines()[-1])["worse"] == verdict["worse"]
    promote = ["finetune", "promote", run, "--name", "carol", "--adapters", str(tmp_path / "adapters")]
    promoted = runner.invoke(main, promote)
    if verdict["worse"]:  # random weights: either verdict may come; a worse run needs --force
        assert promoted.exit_code != 0 and "worse" in promoted.output and not (tmp_path / "adapters" / "carol").exists()
        promoted = runner.invoke(main, [*promote, "--force"])
    assert promoted.exit_code == 0, promoted.output
    about = json.loads((tmp_path / "adapters" / "carol" / "adapter.json").read_text())
    assert about["eval"]["worse"] == verdict["worse"]

    config = server_config(tiny_model_dir, tmp_path / "served", adapters=str(tmp_path / "adapters"))
    client = create_app(config, start_jobs=False).test_client()
    name = f"{tiny_model_dir.name}+carol"
    listed = [m["id"] for m in client.get("/v1/models").get_json()["data"]]
    assert {tiny_model_dir.name, name} <= set(listed)
    answers = {}
    for model in (tiny_model_dir.name, name):
        response = client.post("/synthesize", json={"text": "Hello there.", "model": model, "max_duration_sec": 0.2,
                                                    "seed": 1})  # fmt: skip
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert response.get_json()["model"] == model
        answers[model], rate = sf.read(io.BytesIO(client.get(f"/audio/{response.get_json()['filename']}").data))
        assert rate == 24_000 and len(answers[model]) > 0
    # Same seed, same voice: the adapter (unmerged, in the batched engine) speaks as the merged model did.
    merged_audio = audio
    tuned = answers[name]
    assert len(tuned) == len(merged_audio) and abs(tuned - merged_audio).max() < 1e-3
    base = answers[tiny_model_dir.name]  # and not as the base does: the adapter is applied
    assert len(base) != len(tuned) or abs(base - tuned).max() > 1e-3


def test_a_transcript_without_audio_is_a_clear_cli_error(
    speech_dir: Path, tiny_quantizer: Path, tmp_path: Path
) -> None:
    import shutil

    data = shutil.copytree(speech_dir, tmp_path / "data")
    (data / "wavs" / "LJ004.wav").unlink()
    result = CliRunner().invoke(main, ["finetune", "prepare", str(data), "--out", str(tmp_path / "out"),
                                       "--quantizer", str(tiny_quantizer), "--offline"])  # fmt: skip
    assert result.exit_code == 1 and "metadata.csv line 5: transcript 'LJ004' has no audio" in result.output
    assert not (tmp_path / "out").exists()  # refused before any model loads or anything is written
