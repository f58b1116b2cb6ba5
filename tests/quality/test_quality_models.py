"""Tiny random Whisper and WavLM checkpoints through the real from_pretrained path, and the Scorer on top."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from barkserve.audio.dsp import resample
from barkserve.cli import main
from barkserve.errors import ConfigError, InvalidRequest, ScorerUnavailable
from barkserve.quality import Scorer, ScorerConfig, WhisperTranscriber, XVectorEncoder, cer, drift, similarity, wer
from barkserve.quality.asr import ASR_RATE

RATE = 24_000


def noise(sec: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(round(sec * RATE))).astype(np.float32)


@pytest.fixture(scope="module")
def transcriber(tiny_scorers: tuple[Path, Path]) -> WhisperTranscriber:
    return WhisperTranscriber(str(tiny_scorers[0]), offline=True)


@pytest.fixture(scope="module")
def encoder(tiny_scorers: tuple[Path, Path]) -> XVectorEncoder:
    return XVectorEncoder(str(tiny_scorers[1]), offline=True)


def test_resample_to_16k() -> None:
    out = resample(noise(1.5, 0), RATE, ASR_RATE)
    assert out.dtype == np.float32 and len(out) == 24_000


def test_transcripts_keep_batch_order_and_languages(transcriber: WhisperTranscriber) -> None:
    a, b, c = noise(1.0, 1), noise(2.5, 2), noise(0.4, 3)
    batch = transcriber.transcribe([a, b, c], "en", max_new_tokens=12)
    assert len(batch) == 3 and all(isinstance(t, str) and t for t in batch)
    # Each clip's transcript is the one it gets alone: rows are not mixed up by batching.
    assert batch == [transcriber.transcribe([x], "en", max_new_tokens=12)[0] for x in (a, b, c)]
    mixed = transcriber.transcribe([a, b], ["de", "en"], max_new_tokens=12)
    assert mixed == [transcriber.transcribe([a], "de", max_new_tokens=12)[0], batch[1]]


def test_unknown_language_is_refused(transcriber: WhisperTranscriber) -> None:
    with pytest.raises(InvalidRequest, match="'xx'"):
        transcriber.transcribe([noise(0.2, 0)], "xx")


def test_embeddings_are_unit_vectors_independent_of_the_batch(encoder: XVectorEncoder) -> None:
    clips = [noise(1.0, 1), noise(3.0, 2), noise(0.5, 3)]
    vectors = encoder.embed(clips, RATE)
    assert vectors.shape == (3, encoder.size) == (3, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A clip's embedding does not depend on the lengths of its batch neighbours (no padding leak).
    alone = encoder.embed([clips[0]], RATE)[0]
    assert np.allclose(vectors[0], alone, atol=1e-5)
    assert encoder.embed([], RATE).shape == (0, 16)


def test_similarity_and_drift() -> None:
    assert similarity(np.array([3.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(1.0)
    assert similarity(np.array([1.0, 0.0]), np.array([-2.0, 0.0])) == pytest.approx(-1.0)
    d = drift([np.array([1.0, 0.0]), np.array([0.6, 0.8]), np.array([0.0, 5.0]), np.array([1.0, 0.1])])
    assert d.similarities == pytest.approx((0.6, 0.0, 1 / np.sqrt(1.01)))
    assert d.min_similarity == pytest.approx(0.0) and d.worst_chunk == 2
    assert d.mean_similarity == pytest.approx((0.6 + 0.0 + 1 / np.sqrt(1.01)) / 3)
    one = drift([np.array([0.0, 1.0])])
    assert one.similarities == () and one.min_similarity == one.mean_similarity == 1.0
    with pytest.raises(ValueError, match="at least one"):
        drift([])


def test_score_batch_end_to_end(tiny_scorers: tuple[Path, Path]) -> None:
    asr, speaker = tiny_scorers
    scorer = Scorer(asr=str(asr), speaker=str(speaker), device="cpu", offline=True, batch_size=2)
    clips = [noise(1.0, 1), noise(2.0, 2), noise(0.5, 3)]
    texts = ["[laughs] Hello there.", "你好，世界。", "MAN: Good night."]
    first = scorer.score_batch(clips[:1], texts[:1], "en")[0]
    assert first.embedding is not None and first.similarity is None  # no reference given
    scores = scorer.score_batch(clips, texts, ["en", "zh", "en"], reference_embedding=first.embedding)
    assert len(scores) == 3
    assert scores[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert scores[0].transcript == first.transcript
    for s, clip, text, lang in zip(scores, clips, texts, ["en", "zh", "en"], strict=True):
        assert s.transcript is not None and s.language == lang
        assert s.wer == wer(text, s.transcript, lang) and s.cer == cer(text, s.transcript, lang)
        assert s.signal.duration_sec == pytest.approx(len(clip) / RATE)
        assert s.signal.expected_sec is not None and s.similarity is not None
    assert scores[1].error == scores[1].cer and scores[0].error == scores[0].wer


def test_a_scorer_without_models_measures_the_signal_only() -> None:
    scores = Scorer(asr=None, speaker=None).score_batch([noise(1.0, 0)], ["Hi."], "en")
    assert scores[0].signal.duration_sec == pytest.approx(1.0)
    assert (scores[0].transcript, scores[0].wer, scores[0].error, scores[0].similarity) == (None, None, None, None)


def test_models_load_lazily_and_once(tiny_scorers: tuple[Path, Path]) -> None:
    scorer = Scorer(asr=str(tiny_scorers[0]), speaker="/no/such/speaker/folder", device="cpu", offline=True)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(scorer.asr)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(m is seen[0] for m in seen)
    # The broken speaker model was never touched until now.
    with pytest.raises(ScorerUnavailable, match="/no/such/speaker/folder"):
        scorer.score_batch([noise(0.3, 0)], ["Hi."], "en")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("/no/such/folder", "neither a local folder nor a hub id"),
        ("./relative/path", "neither a local folder nor a hub id"),
        ("whisper", "neither a local folder nor a hub id"),
        ("openai/no-such-whisper-checkpoint", "openai/no-such-whisper-checkpoint"),  # offline: not in the cache
        ("EMPTY", ""),  # a folder without a checkpoint
    ],
)
def test_unloadable_models_name_the_model_and_the_ways_out(source: str, reason: str, tmp_path: Path) -> None:
    if source == "EMPTY":
        source = str(tmp_path)
    for build in (WhisperTranscriber, XVectorEncoder):
        with pytest.raises(ScorerUnavailable) as info:
            build(source, offline=True)
        message = info.value.message
        assert repr(source) in message and reason in message
        assert "HF_HOME" in message and "make-tiny --with-scorers" in message
        assert info.value.code == "scorer_unavailable"


@pytest.mark.parametrize(
    "settings", [{"batch_size": 0}, {"batch_size": True}, {"asr_dtype": "int8"}, {"asr_model": "x/y"}]
)
def test_bad_scorer_settings(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Scorer(**settings)
    assert ScorerConfig.from_dict({"asr": None, "batch_size": 4}).batch_size == 4


def test_make_tiny_with_scorers_writes_loadable_scorers(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    result = CliRunner().invoke(main, ["make-tiny", str(out), "--with-scorers"])
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file()  # the Bark checkpoint itself
    scorer = Scorer(asr=str(out / "asr"), speaker=str(out / "speaker"), device="cpu", offline=True)
    scores = scorer.score_batch([noise(0.5, 0)], ["Hi."], "en", reference_embedding=np.ones(16))
    assert scores[0].transcript is not None and scores[0].similarity is not None


def test_a_clip_too_short_for_the_speaker_model_is_padded_not_an_error(tiny_scorers: Any) -> None:
    from barkserve.quality.speaker import XVectorEncoder

    encoder = XVectorEncoder(str(tiny_scorers[1]), offline=True)
    vectors = encoder.embed([np.zeros(0, np.float32), np.full(100, 0.1, np.float32)], rate=24_000)
    assert vectors.shape[0] == 2 and np.all(np.isfinite(vectors))


def test_the_asr_decodes_no_more_tokens_than_the_text_could_need() -> None:
    from barkserve.quality.asr import MAX_NEW_TOKENS
    from barkserve.quality.scorer import token_budget

    assert token_budget(["Hi [laughs] there."]) == 16 + len("Hi there.")  # cues are not spoken
    assert token_budget(["a" * 10, "b" * 40]) == 56
    assert token_budget(["x" * 5000]) == MAX_NEW_TOKENS
