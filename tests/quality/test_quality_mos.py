"""Naturalness with the real predictors and their shipped weights (DNSMOS, Distill-MOS) on espeak-ng speech.

Also: batching changes no score (each predictor's own per-clip code is the reference), too-short
audio is "not scored", min_mos regenerates a chunk spoiled by noise, a predictor that cannot load
fails a request before anything is generated, and Resemblyzer as speaker_model.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import pytest
from real_voice import espeak

from barkserve.audio.dsp import resample
from barkserve.errors import ScorerUnavailable
from barkserve.quality.mos import MIN_SEC, MOS_RATE, load_mos
from barkserve.quality.scorer import Scorer
from support import FakeEngine

TEXT = "The quick brown fox jumps over the lazy dog near the river bank. Please call Stella and ask her to bring these."


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    return espeak(TEXT, "en+m1")


def with_noise(audio: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """White noise at `snr_db` below the speech (None: the noise alone, at the speech's level)."""
    power = float(np.mean(audio**2))
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32) * np.sqrt(power)
    out = noise if snr_db is None else audio + noise / np.sqrt(10 ** (snr_db / 10))
    return np.clip(out, -1, 1).astype(np.float32)


@pytest.mark.parametrize("name", ["dnsmos", "distillmos"])
def test_clean_speech_scores_above_its_noisy_copy_which_scores_above_noise(
    name: str, speech: tuple[np.ndarray, int]
) -> None:
    audio, rate = speech
    clean, noisy, noise = load_mos(name).predict([audio, with_noise(audio, 0.0), with_noise(audio, None)], rate)
    assert {clean.predictor, noisy.predictor, noise.predictor} == {name}
    assert clean.mos is not None and noisy.mos is not None and noise.mos is not None
    # Measured: DNSMOS 2.42 > 1.56 > 1.09, Distill-MOS 2.47 > 1.87 > 1.16 (see calibration for the spread).
    assert clean.mos > noisy.mos + 0.2 and noisy.mos > noise.mos + 0.2, (clean, noisy, noise)
    assert all(1.0 <= s.mos <= 5.0 for s in (clean, noisy, noise))  # type: ignore[operator]


def test_dnsmos_parts_and_batching_match_speechmos_clip_by_clip(speech: tuple[np.ndarray, int]) -> None:
    from speechmos import dnsmos

    audio, rate = speech
    clips = [audio, with_noise(audio, 5.0), np.concatenate([audio, audio, audio])]  # 1, 1 and 7 windows
    batched = load_mos("dnsmos").predict(clips, rate)
    folder = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models")
    reference = dnsmos.DNSMOS(os.path.join(folder, "sig_bak_ovr.onnx"), os.path.join(folder, "model_v8.onnx"))
    for clip, got in zip(clips, batched, strict=True):
        want = reference(np.clip(resample(clip, rate, MOS_RATE), -1, 1), MOS_RATE, False)
        assert got.mos == pytest.approx(want["ovrl_mos"], abs=1e-4)
        assert got.parts["sig"] == pytest.approx(want["sig_mos"], abs=1e-4)
        assert got.parts["bak"] == pytest.approx(want["bak_mos"], abs=1e-4)
        assert got.parts["p808"] == pytest.approx(want["p808_mos"], abs=1e-4)


def test_distillmos_batching_matches_its_own_forward_clip_by_clip(speech: tuple[np.ndarray, int]) -> None:
    import torch

    from barkserve.quality.mos import _import_distillmos

    audio, rate = speech
    clips = [audio, with_noise(audio, 5.0), np.concatenate([audio, audio])]  # 1, 1 and 4 segments
    predictor = load_mos("distillmos")
    batched = predictor.predict(clips, rate)
    model = _import_distillmos().ConvTransformerSQAModel(load_weights=False)  # segments in its forward
    model.load_state_dict(predictor.model.state_dict())  # type: ignore[attr-defined]
    with torch.inference_mode():
        for clip, got in zip(clips, batched, strict=True):
            x = torch.from_numpy(np.clip(resample(clip, rate, MOS_RATE), -1, 1)[None].astype(np.float32))
            assert got.mos == pytest.approx(float(model.eval()(x).reshape(-1)[0]), abs=1e-4)


@pytest.mark.parametrize("name", ["dnsmos", "distillmos"])
def test_audio_too_short_is_not_scored(name: str, speech: tuple[np.ndarray, int]) -> None:
    audio, rate = speech
    short = audio[: int(0.5 * MIN_SEC * rate)]
    results = Scorer(asr=None, speaker=None, mos=name, device="cpu").score_batch(
        [short, np.zeros(0, np.float32), audio], ["Hi.", "Hi.", TEXT], "en", rate=rate
    )
    assert [r.mos is None for r in results] == [True, True, False]
    assert results[0].naturalness is not None and "at least" in str(results[0].naturalness.not_scored)


def test_an_unknown_mos_model_is_refused() -> None:
    from barkserve.config import ServerConfig
    from barkserve.errors import ConfigError

    with pytest.raises(ConfigError, match="mos_model"):
        ServerConfig(mos_model="utmos-from-somewhere")
    with pytest.raises(ScorerUnavailable, match="unknown"):
        load_mos("utmos")


class SpeechEngine(FakeEngine):
    """Real speech for every chunk, and noise over it for the seeds in `spoiled`."""

    speech: np.ndarray = np.zeros(0, np.float32)
    spoiled: frozenset[int] = frozenset()

    def generate(self, request: Any) -> Any:
        from barkserve.engine import GeneratedAudio

        self.requests.append(request)
        seed = request.options.seed
        audio = with_noise(self.speech, -5.0, seed) if seed in self.spoiled else self.speech
        return GeneratedAudio(audio=audio, sample_rate=self.sample_rate)


def test_min_mos_regenerates_the_chunk_spoiled_by_noise_and_keeps_the_clean_one(
    make_app: Any, speech: tuple[np.ndarray, int]
) -> None:
    audio, rate = speech
    SpeechEngine.speech = resample(audio, rate, 24_000)
    SpeechEngine.spoiled = frozenset({21})  # the second chunk's first generation (seed 20 + 1)
    app = make_app(SpeechEngine, asr_model="", speaker_model="", mos_model="dnsmos")
    long = "and it keeps going with enough words that no two of these sentences ever fit into one chunk together"
    text = f"The first sentence {long}. The second sentence {long}. The third sentence {long}."
    body = {"text": text, "seed": 20, "sentence_pause_sec": 0, "qc": {"max_error": None, "min_mos": 2.0, "tries": 3}}
    response = app.test_client().post("/synthesize", json=body)
    assert response.status_code == 200, response.data
    reports = response.get_json()["qc"]
    assert [r["tries"] for r in reports] == [1, 2, 1] and all(r["passed"] for r in reports)
    spoiled, clean = reports[1]["attempts"]
    assert spoiled["seed"] == 21 and not spoiled["passed"] and "naturalness" in spoiled["failures"][0]
    assert clean["seed"] == 22 and clean["mos"] >= 2.0 > spoiled["mos"] and reports[1]["seed"] == 22


def test_min_mos_without_a_mos_model_is_a_clear_400(make_app: Any) -> None:
    app = make_app(FakeEngine, asr_model="", speaker_model="")
    response = app.test_client().post("/synthesize", json={"text": "Hi there.", "qc": {"min_mos": 2.5}})
    assert response.status_code == 400 and "mos_model" in response.get_json()["error"]["message"]


def test_a_mos_model_that_cannot_load_is_a_503_before_any_generation(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "speechmos.dnsmos", None)  # the package is not importable
    app = make_app(FakeEngine, asr_model="", speaker_model="", mos_model="dnsmos")
    response = app.test_client().post("/synthesize", json={"text": "Hi there.", "qc": {"min_mos": 2.5}})
    assert response.status_code == 503, response.data
    error = response.get_json()["error"]
    assert error["code"] == "scorer_unavailable" and "barkserve[mos]" in error["message"]
    synth = app.extensions["barkserve"].synthesizer
    assert synth.engine(synth.config.default_model).requests == []  # nothing was generated


def test_resemblyzer_as_speaker_model_tells_voices_apart_in_one_batch() -> None:
    scorer = Scorer(asr=None, speaker="resemblyzer", device="cpu")
    clips = [espeak(TEXT, "en+m1"), espeak("We will meet again tomorrow at the station.", "en+m1"),
             espeak("We will meet again tomorrow at the station.", "en+f3")]  # fmt: skip
    rate = clips[0][1]
    vectors = scorer.speaker.embed([c for c, _ in clips], rate)
    one_by_one = np.stack([scorer.speaker.embed([c], rate)[0] for c, _ in clips])
    assert vectors.shape == (3, 256) and np.allclose(vectors, one_by_one, atol=1e-5)
    same, other = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same > other + 0.1, (same, other)
