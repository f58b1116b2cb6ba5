"""UTMOS from a checkpoint file (`mos_model = "utmos:PATH"`), proven on a tiny random checkpoint that the
project builds and saves, loaded through the same code as the real UTMOS22 weights (which are not here:
these tests say nothing of UTMOS's quality). Also: the package's own model has the tensor names and
sizes the loader builds, batching changes no score, and a missing or damaged file is a clear error.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.errors import ConfigError, ScorerUnavailable
from barkserve.quality.mos import MOS_RATE, load_mos
from barkserve.quality.scorer import Scorer, ScorerConfig
from barkserve.quality.utmos import UtmosShape, build, utmos_scores
from barkserve.testing.tiny_utmos import make_tiny_utmos
from support import FakeEngine


@pytest.fixture(scope="module")
def tiny_utmos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_utmos(tmp_path_factory.mktemp("utmos") / "utmos_state_dict.pt")


def clips(seed: int = 0) -> list[np.ndarray]:
    """Four clips at 16 kHz: two of 1.5 s (they share a forward pass), one of 2 s, one of 3 s."""
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * MOS_RATE))).astype(np.float32) for s in (1.5, 2.0, 1.5, 3.0)]


def test_the_loader_builds_the_packages_model_at_utmos22s_sizes() -> None:
    """A real utmos_state_dict.pt fits utmos_pytorch's UTMOSModel; the loader must build exactly that model."""
    from utmos_pytorch.utmos_torch import UTMOSModel

    want = UTMOSModel().state_dict()
    got = build(UtmosShape.of(want)).state_dict()
    assert UtmosShape.of(want) == UtmosShape()
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}


def test_a_tiny_checkpoint_loads_and_scores_like_the_packages_own_scoring(tiny_utmos: Path) -> None:
    from torch import nn
    from utmos_pytorch.utmos_torch import UTMOSScoreTorch

    predictor = load_mos(f"utmos:{tiny_utmos}")
    results = predictor.predict(clips(), MOS_RATE)
    assert [r.predictor for r in results] == ["utmos"] * 4 and all(r.mos is not None for r in results)
    # The package's scoring (domain, listener, 2 x mean + 3) on the same loaded model, clip by clip.
    package = UTMOSScoreTorch.__new__(UTMOSScoreTorch)
    nn.Module.__init__(package)
    package.model = predictor.model  # type: ignore[attr-defined]
    for clip, got in zip(clips(), results, strict=True):
        want = float(package.score(torch.from_numpy(clip))[0])
        assert got.mos == pytest.approx(want, abs=1e-4)


def test_batching_equal_lengths_changes_no_score(tiny_utmos: Path) -> None:
    predictor = load_mos(f"utmos:{tiny_utmos}")
    batched = [r.mos for r in predictor.predict(clips(), MOS_RATE)]
    one_by_one = [predictor.predict([c], MOS_RATE)[0].mos for c in clips()]
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    model = predictor.model  # type: ignore[attr-defined]
    with torch.inference_mode():
        alone = utmos_scores(model, torch.from_numpy(clips()[0][None]))
    assert float(alone[0]) == pytest.approx(batched[0], abs=1e-4)


def test_another_checkpoint_gives_other_scores(tiny_utmos: Path, tmp_path: Path) -> None:
    other = make_tiny_utmos(tmp_path / "other.pt", seed=1)
    first = load_mos(f"utmos:{tiny_utmos}").predict(clips()[:1], MOS_RATE)[0].mos
    second = load_mos(f"utmos:{other}").predict(clips()[:1], MOS_RATE)[0].mos
    assert first is not None and second is not None and abs(first - second) > 1e-3


def damaged(kind: str, good: Path, folder: Path) -> Path:
    path = folder / f"{kind}.pt"
    state = torch.load(good, weights_only=True)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "lacks-a-tensor":
        torch.save({k: v for k, v in state.items() if "decoder_rnn.weight_hh_l0" not in k}, path)
    elif kind == "wrong-shape":
        key = "output_layers.1.net.3.weight"
        torch.save({**state, key: torch.zeros(2, state[key].shape[1])}, path)
    elif kind == "other-model":
        torch.save({"encoder.weight": torch.zeros(3)}, path)
    elif kind == "not-a-state-dict":
        torch.save([torch.zeros(3)], path)
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("missing", "there is no such file"),
        ("truncated", "not a readable torch checkpoint"),
        ("text", "not a readable torch checkpoint"),
        ("lacks-a-tensor", "it lacks 2 of the model's tensors"),
        ("wrong-shape", "do not fit a UTMOS model"),
        ("other-model", "not a UTMOS state dict"),
        ("not-a-state-dict", "holds no state dict"),
    ],
)
def test_a_missing_or_damaged_checkpoint_is_a_clear_error(
    kind: str, says: str, tiny_utmos: Path, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere.pt" if kind == "missing" else damaged(kind, tiny_utmos, tmp_path)
    with pytest.raises(ScorerUnavailable) as caught:
        load_mos(f"utmos:{path}")
    message = str(caught.value)
    assert says in message and str(path) in message and "never downloads" in message, message


def test_a_checkpoint_with_tensors_the_model_does_not_use_loads(tiny_utmos: Path, tmp_path: Path) -> None:
    """fairseq's pre-training leftovers (e.g. mask_emb) may be in a converted file; they are not needed."""
    state = torch.load(tiny_utmos, weights_only=True)
    path = tmp_path / "extra.pt"
    torch.save({**state, "feature_extractors.0.ssl_model.mask_emb": torch.zeros(48)}, path)
    want = load_mos(f"utmos:{tiny_utmos}").predict(clips()[:1], MOS_RATE)[0].mos
    assert load_mos(f"utmos:{path}").predict(clips()[:1], MOS_RATE)[0].mos == pytest.approx(want)


@pytest.mark.parametrize("value", ["utmos:", "utmos: ", "utmos", "UTMOS:/x.pt", "utmos22"])
def test_a_malformed_utmos_setting_is_refused(value: str) -> None:
    from barkserve.config import ServerConfig

    with pytest.raises(ConfigError, match="utmos:"):
        ServerConfig(mos_model=value)
    with pytest.raises(ConfigError, match="utmos:PATH"):
        ScorerConfig(mos=value)
    result = CliRunner().invoke(main, ["say", "Hi.", "--mos-model", value])
    assert result.exit_code == 2 and "utmos:" in result.output, result.output


def test_a_utmos_checkpoint_that_is_missing_is_a_503_before_any_generation(make_app: Any, tmp_path: Path) -> None:
    app = make_app(FakeEngine, asr_model="", speaker_model="", mos_model=f"utmos:{tmp_path / 'utmos.pt'}")
    response = app.test_client().post("/synthesize", json={"text": "Hi there.", "qc": {"min_mos": 2.5}})
    assert response.status_code == 503, response.data
    error = response.get_json()["error"]
    assert error["code"] == "scorer_unavailable" and "no such file" in error["message"]
    synth = app.extensions["barkserve"].synthesizer
    assert synth.engine(synth.config.default_model).requests == []


def test_qc_scores_chunks_with_a_utmos_checkpoint(make_app: Any, tiny_utmos: Path) -> None:
    """Served: the tiny weights say nothing of quality, so min_mos 1 (the floor) passes every chunk."""
    app = make_app(FakeEngine, asr_model="", speaker_model="", mos_model=f"utmos:{tiny_utmos}")
    body = {"text": "Hi there, how are you today?", "max_duration_sec": 2, "qc": {"max_error": None, "min_mos": 1}}
    response = app.test_client().post("/synthesize", json=body)
    assert response.status_code == 200, response.data
    report = response.get_json()["qc"]
    assert report and all(r["passed"] for r in report)


def test_eval_names_utmos_and_its_file_in_the_report(tiny_model_dir: Path, tiny_utmos: Path, tmp_path: Path) -> None:
    testset = tmp_path / "t.jsonl"
    testset.write_text(json.dumps({"text": "Hello there, friend.", "language": "en", "voice": "v2/en_speaker_1"}))
    out = tmp_path / "out"
    args = ["eval", "--model", str(tiny_model_dir), "--offline", "--device", "cpu", "--testset", str(testset),
            "--asr-model", "", "--speaker-model", "", "--mos-model", f"utmos:{tiny_utmos}", "--out", str(out),
            "--config", "base:engine=reference,max_duration=2", "--bootstrap", "100"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    schema = json.loads(resources.files("barkserve.evaluation").joinpath("data/report.schema.json").read_text())
    jsonschema.validate(report, schema)
    assert report["settings"]["mos_model"] == f"utmos:{tiny_utmos}"
    assert (
        report["settings"]["mos_predictor"].startswith("UTMOS22")
        and str(tiny_utmos) in report["settings"]["mos_predictor"]
    )
    (sample,) = report["samples"]
    mos = sample["metrics"]["mos"]
    assert (mos is not None and 1 <= mos <= 5) or "mos" in sample.get("not_scored", {}), sample


def test_a_utmos_scorer_loads_once_and_scores_in_score_batch(tiny_utmos: Path) -> None:
    scorer = Scorer(asr=None, speaker=None, mos=f"utmos:{tiny_utmos}", device="cpu")
    results = scorer.score_batch(clips(), ["x"] * 4, "en", rate=MOS_RATE)
    assert scorer.mos is scorer.mos and [r.naturalness.predictor for r in results if r.naturalness] == ["utmos"] * 4


def test_say_with_a_missing_utmos_checkpoint_is_a_clear_cli_error_before_generation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.wav"
    args = ["say", "Hi there.", "-o", str(out), "--model", str(tiny_model_dir), "--offline", "--qc",
            "--asr-model", "", "--speaker-model", "", "--mos-model", f"utmos:{tmp_path / 'nowhere.pt'}"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "no such file" in result.output and "utmos:" in result.output, result.output
    assert not out.exists()


def test_a_state_dict_saved_with_the_weight_norm_folded_in_loads_the_same(tiny_utmos: Path, tmp_path: Path) -> None:
    """utmos-pytorch folds the positional convolution's weight norm after loading; a user who saved that
    model's state dict has one `weight` where the published file has `weight_g` and `weight_v`."""
    from torch import nn

    model = load_mos(f"utmos:{tiny_utmos}").model  # type: ignore[attr-defined]
    nn.utils.remove_weight_norm(model.get_submodule("feature_extractors.0.ssl_model.encoder.pos_conv.0"))
    path = tmp_path / "folded.pt"
    torch.save(model.state_dict(), path)
    assert "feature_extractors.0.ssl_model.encoder.pos_conv.0.weight" in torch.load(path, weights_only=True)
    want = [r.mos for r in load_mos(f"utmos:{tiny_utmos}").predict(clips(), MOS_RATE)]
    got = [r.mos for r in load_mos(f"utmos:{path}").predict(clips(), MOS_RATE)]
    assert got == pytest.approx(want, abs=1e-4)
