"""`barkserve finetune eval`: the held-out lines through the base and the fine-tune, one report, one verdict."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.errors import ConfigError
from barkserve.finetune.eval import SPEAKER_REFERENCE, VOICE_NAME, FinetuneEvalOptions, decide, evaluate_run


@pytest.fixture(scope="module")
def evaluated(trained_run: Any, tiny_scorer_models: tuple[Path, Path]) -> tuple[Any, dict[str, Any]]:
    asr, speaker = tiny_scorer_models
    args = ["finetune", "eval", str(trained_run.run_dir), "--asr-model", str(asr), "--speaker-model", str(speaker),
            "--max-duration", "0.5", "--seed", "5", "--bootstrap", "200", "--save-audio",
            "--device", "cpu", "--offline"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout.splitlines()[-1])


def test_both_models_speak_every_held_out_line_with_the_same_seed_and_voice(
    trained_run: Any, evaluated: Any, prepared: Path
) -> None:
    out = trained_run.run_dir / "eval"
    report = json.loads((out / "report.json").read_text())
    held = [i for i in json.loads((prepared / "dataset.json").read_text())["items"] if i["split"] == "heldout"]
    assert [c["name"] for c in report["configurations"]] == ["base", "finetune"]
    rows = [(s["config"], s["id"], s["text"], s["seed"], s["voice"]) for s in report["samples"]]
    expected = [(h["id"], h["text"], 5 + n, VOICE_NAME) for n, h in enumerate(held)]
    assert rows == [(c, *row) for c in ("base", "finetune") for row in expected]
    assert report["settings"]["similarity_reference"] == SPEAKER_REFERENCE
    assert report["finetune"]["verdict"] == json.loads((out / "verdict.json").read_text())
    # The fine-tune's weights made its samples: same seeds and voice, other audio than the base's.
    import soundfile as sf

    for s in report["samples"][: len(held)]:
        base = sf.read(out / s["audio_file"])[0]
        tuned = sf.read(out / s["audio_file"].replace("/base/", "/finetune/"))[0]
        assert len(base) and len(tuned) and (len(base) != len(tuned) or not np.array_equal(base, tuned))
    # The merged model folder was temporary.
    assert not list(out.glob(".merged-*"))


def test_the_report_validates_and_its_page_leads_with_the_verdict(trained_run: Any, evaluated: Any) -> None:
    import jsonschema

    out = trained_run.run_dir / "eval"
    schema = json.loads(resources.files("barkserve.evaluation").joinpath("data/report.schema.json").read_text())
    jsonschema.validate(json.loads((out / "report.json").read_text()), schema)
    page = (out / "report.html").read_text()
    assert page.index("Fine-tune (best.pt, step") < page.index("<h1>barkserve eval</h1>")


def test_the_verdict_is_the_paired_wer_difference_of_the_report(trained_run: Any, evaluated: Any) -> None:
    _, printed = evaluated
    verdict = json.loads((trained_run.run_dir / "eval" / "verdict.json").read_text())
    assert printed["worse"] == verdict["worse"] and printed["report"].endswith("report.json")
    assert verdict["checkpoint"] == "best" and verdict["step"] == trained_run.best_step
    samples = json.loads((trained_run.run_dir / "eval" / "report.json").read_text())["samples"]
    errors = {c: [s["metrics"]["error"] if s["status"] == "ok" else 1.0 for s in samples if s["config"] == c]
              for c in ("base", "finetune")}  # fmt: skip
    assert verdict["wer_base"] == pytest.approx(np.mean(errors["base"]), abs=1e-6)
    assert verdict["wer_finetune"] == pytest.approx(np.mean(errors["finetune"]), abs=1e-6)
    diff = verdict["wer_diff"]
    assert diff["mean"] == pytest.approx(np.mean(errors["finetune"]) - np.mean(errors["base"]), abs=1e-6)
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"] and verdict["worse"] == (diff["ci_low"] > 0)


def test_similarity_is_to_the_mean_of_the_training_clips(
    trained_run: Any, evaluated: Any, prepared: Path, tiny_loaded: Any, tiny_scorer_models: tuple[Path, Path]
) -> None:
    import soundfile as sf

    from barkserve.cloning.codec import decode_codes
    from barkserve.finetune.prepare import load_dataset
    from barkserve.quality.scorer import Scorer

    _, train_items, _ = load_dataset(prepared)
    scorer = Scorer(asr=None, speaker=str(tiny_scorer_models[1]), device="cpu", offline=True)
    clips = [decode_codes(tiny_loaded.model.codec_model, item.codes) for item in train_items]
    mean = scorer.speaker.embed(clips).mean(axis=0)
    mean /= np.linalg.norm(mean)
    out = trained_run.run_dir / "eval"
    for s in json.loads((out / "report.json").read_text())["samples"]:
        audio, rate = sf.read(out / s["audio_file"], dtype="float32")
        embedding = scorer.speaker.embed([audio], rate)[0]
        # The saved WAV is 16-bit and clipped, and the report's clips were embedded in a padded batch.
        assert s["metrics"]["similarity"] == pytest.approx(float(embedding @ mean), abs=6e-4)


def test_eval_measures_similarity_against_the_reference_clips(
    tiny_model_dir: Path, tiny_loaded: Any, tmp_path: Path
) -> None:
    """The tiny codec decodes every clip to near-identical noise, so the wiring is checked here with real
    speech as the reference and Resemblyzer's real voice encoder: far from the voice's own prompt."""
    import soundfile as sf
    from finetune_helpers import espeak

    from barkserve.audio.dsp import resample
    from barkserve.evaluation.eval_config import EvalConfig
    from barkserve.evaluation.run import EvalSettings, mean_embedding, run_eval
    from barkserve.evaluation.testset import TestLine, TestSet
    from barkserve.options import SynthesisOptions
    from barkserve.quality.scorer import Scorer, ScorerConfig

    speech = [resample(*espeak(text, "en+m1"), 24_000) for text in ("One two three.", "Four five six.")]
    scorer = ScorerConfig(asr=None, speaker="resemblyzer", device="cpu", offline=True)
    line = TestLine(index=0, line=1, id="a", text="Hello there.", language="en", voice="v2/en_speaker_1")
    report = run_eval(EvalSettings(
        testset=TestSet("t", (line,)), configs=(EvalConfig("x", options=SynthesisOptions(max_duration_sec=0.5)),),
        scorer=scorer, base={"model": str(tiny_model_dir), "device": "cpu", "offline": True},
        audio_dir=tmp_path / "audio", warmup=False, resamples=100, reference_clips=tuple(speech), reference_label="r",
    ))  # fmt: skip
    sample = report["samples"][0]
    audio, rate = sf.read(tmp_path / sample["audio_file"], dtype="float32")
    encoder = Scorer(scorer).speaker
    embedding = encoder.embed([audio], rate)[0]
    reference = mean_embedding(Scorer(scorer), speech)
    assert report["settings"]["similarity_reference"] == "r"
    assert sample["metrics"]["similarity"] == pytest.approx(float(embedding @ reference), abs=1e-3)
    # Not the default reference (the voice's prompt decoded by the codec), which is far from this one.
    from barkserve.cloning.codec import decode_codes
    from barkserve.voices import PresetIndex

    prompt = PresetIndex(str(tiny_model_dir), local_files_only=True).load("v2/en_speaker_1")
    own = encoder.embed([decode_codes(tiny_loaded.model.codec_model, prompt.fine)])[0]
    assert abs(float(embedding @ own) - sample["metrics"]["similarity"]) > 1e-2


def _samples(base: list[float | None], tuned: list[float | None]) -> list[dict[str, Any]]:
    def sample(config: str, i: int, error: float | None) -> dict[str, Any]:
        return {"config": config, "id": f"l{i}", "status": "ok" if error is not None else "failed",
                "metrics": {"error": error}}  # fmt: skip

    return [sample("base", i, e) for i, e in enumerate(base)] + [sample("finetune", i, e) for i, e in enumerate(tuned)]


def test_worse_means_beyond_the_confidence_interval() -> None:
    clearly = decide(_samples([0.1, 0.2, 0.1, 0.3, 0.2], [0.5, 0.6, 0.4, 0.7, 0.6]), 500)
    assert clearly["worse"] and clearly["wer_diff"]["ci_low"] > 0 and "worse than the base" in clearly["reason"]
    mixed = decide(_samples([0.1, 0.5, 0.2, 0.6, 0.3], [0.3, 0.2, 0.4, 0.4, 0.2]), 500)
    assert not mixed["worse"] and mixed["wer_diff"]["ci_low"] <= 0 <= mixed["wer_diff"]["ci_high"]
    # Worse on average, but within what these five lines' noise explains: not "worse".
    noisy = decide(_samples([0.1, 0.5, 0.2, 0.6, 0.3], [0.4, 0.3, 0.45, 0.45, 0.4]), 500)
    assert noisy["wer_diff"]["mean"] > 0 and noisy["wer_diff"]["ci_low"] <= 0 and not noisy["worse"]
    better = decide(_samples([0.5, 0.6, 0.4, 0.7, 0.6], [0.1, 0.2, 0.1, 0.3, 0.2]), 500)
    assert not better["worse"] and "better" in better["reason"]


def test_a_fine_tune_that_says_nothing_is_worse() -> None:
    # Failed samples are not dropped from the pairs: each lost every word.
    verdict = decide(_samples([0.1, 0.2, 0.1, 0.2], [None, None, None, None]), 500)
    assert verdict["worse"] and verdict["wer_finetune"] == 1.0 and verdict["failed"] == {"base": 0, "finetune": 4}


def test_no_asr_model_or_checkpoint_is_a_clear_error(trained_run: Any, tmp_path: Path) -> None:
    import shutil

    with pytest.raises(ConfigError, match="needs an ASR model"):
        evaluate_run(trained_run.run_dir, FinetuneEvalOptions(asr_model="", device="cpu", offline=True))
    run = shutil.copytree(trained_run.run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("eval"))
    (run / "best.pt").unlink()
    result = CliRunner().invoke(main, ["finetune", "eval", str(run), "--asr-model", "x", "--offline"])
    assert result.exit_code != 0 and "has no best.pt yet" in result.output
