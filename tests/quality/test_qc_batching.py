"""Quality control scores chunks in batches: across a request's chunks and across concurrent requests.

Real speech (espeak-ng) and the real shipped speaker encoder (Resemblyzer) through the production
`Scorer`, `ScoringQueue`, `ScorerJudge` and `Synthesizer`. Races are made deterministic by holding the
queue (`ScoringQueue.held`) until the chunks under test are all waiting; nothing is timed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from real_voice import espeak

from barkserve.config import ScorerSettings, ServerConfig
from barkserve.engine import GeneratedAudio
from barkserve.quality.judge import ScorerJudge
from barkserve.quality.scorer import Scorer, shared_scorer
from barkserve.quality.speaker import similarity
from barkserve.synthesizer import Synthesizer, make_judge

LONG = "and it keeps going with enough words that no two of these sentences ever fit into one chunk together"
THREE = f"The first sentence is fine {LONG}. The second one is fine too {LONG}. The third is fine {LONG}."


class EspeakEngine:
    """Chunks of real speech: espeak-ng says each chunk's text in one voice."""

    def __init__(self, loaded: Any) -> None:
        self._tokenizer = loaded.tokenizer
        self.sample_rate = loaded.sample_rate
        self.texts: dict[tuple[int, ...], str] = {}

    def tokenize(self, text: str) -> Any:
        from barkserve.engine.reference import text_inputs

        ids = text_inputs(self._tokenizer, text)
        self.texts[tuple(int(i) for i in ids)] = text
        return ids

    def generate(self, request: Any) -> GeneratedAudio:
        import soxr

        audio, rate = espeak(self.texts[tuple(int(i) for i in request.text_ids)], "en+m1")
        return GeneratedAudio(soxr.resample(audio, rate, self.sample_rate).astype(np.float32), self.sample_rate)


@pytest.fixture
def scorer() -> Scorer:
    return Scorer(asr=None, speaker="resemblyzer", device="cpu", offline=True)


def synthesizer(scorer: Scorer, model_dir: Any, root: Any) -> Synthesizer:
    config = ServerConfig(model=str(model_dir), voices_dir=root, offline=True)
    return Synthesizer(config, engine_factory=EspeakEngine, judge=ScorerJudge(scorer))


QC = {"max_error": None, "min_similarity": 0.75, "tries": 1}


def test_two_concurrent_requests_chunks_are_scored_in_one_forward_pass(
    scorer: Scorer, tiny_model_dir: Any, tmp_path: Any
) -> None:
    synth = synthesizer(scorer, tiny_model_dir, tmp_path)
    results: dict[str, Any] = {}

    def request(name: str, text: str) -> None:
        results[name] = synth.synthesize(text, options={"seed": 1, "qc": QC})

    threads = [threading.Thread(target=request, args=(n, t)) for n, t in (("a", "Hello there."), ("b", "Good day."))]
    with scorer.queue.held():
        for t in threads:
            t.start()
        scorer.queue.wait_pending(2)  # both requests' chunks are waiting for the scorer
    for t in threads:
        t.join()
    assert scorer.queue.batches == [2]  # one forward pass for both requests
    for name in ("a", "b"):
        (report,) = results[name].qc
        assert report.passed and report.score.embedding is not None and report.score.embedding.shape == (256,)


class Made:
    """A finished request of a queuing engine."""

    def __init__(self, audio: GeneratedAudio) -> None:
        self.audio = audio
        self.finished = True

    def wait(self, timeout: float | None = None) -> GeneratedAudio:
        return self.audio

    def cancel(self) -> None:
        pass


class BatchEngine(EspeakEngine):
    """A queuing engine that makes every chunk sent to it at once, as a batched engine's step does."""

    def submit(self, request: Any) -> Made:
        return Made(self.generate(request))

    def load(self) -> Any:
        from barkserve.engine.base import EngineLoad

        return EngineLoad()

    def close(self) -> None:
        pass


def test_a_requests_made_chunks_are_scored_together_and_compared_with_the_first(
    scorer: Scorer, tiny_model_dir: Any, tmp_path: Any
) -> None:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    synth = Synthesizer(config, engine_factory=BatchEngine, judge=ScorerJudge(scorer))
    results: list[Any] = []
    handovers: list[int] = []
    submit_many = scorer.queue.submit_many
    scorer.queue.submit_many = lambda chunks: handovers.append(len(chunks)) or submit_many(chunks)  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: results.append(synth.synthesize(THREE, options={"seed": 1, "qc": QC})))
    with scorer.queue.held():
        thread.start()
        scorer.queue.wait_pending(1)  # the first chunk is being judged...
        assert scorer.queue.pending == 3  # ... and the two made with it were handed over before it
    thread.join()
    assert handovers == [3]  # handed over at once: the worker never sees a part of them
    assert scorer.queue.batches == [3]  # the three chunks in one forward pass, none scored again
    reports = results[0].qc
    assert len(reports) == 3 and all(r.passed for r in reports)
    first = reports[0].score.embedding
    assert reports[0].score.similarity is None  # the first chunk is the reference
    for r in reports[1:]:
        assert r.score.similarity == pytest.approx(similarity(r.score.embedding, first))
        assert r.score.similarity > 0.75  # the same voice


def test_a_batch_scores_each_chunk_as_it_would_be_scored_alone(scorer: Scorer) -> None:
    clips = [espeak(t, "en+m1") for t in ("One sentence here.", "Another, somewhat longer sentence.")]
    alone = [scorer.queue.score(a, r, "x", "en").embedding for a, r in clips]
    with scorer.queue.held():
        futures = [scorer.queue.submit(a, r, "x", "en") for a, r in clips]
    together = [f.result().embedding for f in futures]
    assert scorer.queue.batches == [1, 1, 2]
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_failing_batch_fails_each_of_its_chunks_and_the_queue_goes_on(scorer: Scorer) -> None:
    audio, rate = espeak("Hello.", "en+m1")
    with scorer.queue.held():
        bad = scorer.queue.submit(audio, rate, "x", "en")
        worse = scorer.queue.submit(np.zeros((2, 2), np.float32), rate, "x", "en")  # not mono: the batch fails
    for f in (bad, worse):
        with pytest.raises(ValueError, match="mono"):
            f.result()
    assert scorer.queue.score(audio, rate, "x", "en").embedding is not None


def test_the_servers_judges_share_one_scorer_per_process() -> None:
    settings = ScorerSettings("", "resemblyzer", "", "cpu", True)
    first, second = make_judge(settings), make_judge(settings)
    assert isinstance(first, ScorerJudge) and isinstance(second, ScorerJudge)
    assert first.scorer is second.scorer  # its models load once, its queue batches every request's chunks
    assert first.scorer is shared_scorer(first.scorer.config)
    other = make_judge(ScorerSettings("", "resemblyzer", "", "cpu", False))
    assert isinstance(other, ScorerJudge) and other.scorer is not first.scorer


class NoisyEngine(EspeakEngine):
    """Speech, except the generation with seed 101: static instead of speech, as Bark sometimes makes."""

    def generate(self, request: Any) -> GeneratedAudio:
        made = super().generate(request)
        if request.options.seed != 101:
            return made
        rng = np.random.default_rng(0)
        return GeneratedAudio((0.1 * rng.standard_normal(len(made.audio))).astype(np.float32), made.sample_rate)


@pytest.mark.parametrize("gate", [True, False])
def test_the_signal_gate_regenerates_a_chunk_of_static(
    gate: bool, scorer: Scorer, tiny_model_dir: Any, tmp_path: Any
) -> None:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    synth = Synthesizer(config, engine_factory=NoisyEngine, judge=ScorerJudge(scorer))
    qc = {"max_error": None, "signal": gate, "tries": 3}
    reports = [r.to_dict() for r in synth.synthesize(THREE, options={"seed": 100, "qc": qc}).qc]
    static = reports[1]["attempts"][0]
    assert static["seed"] == 101 and any(p.startswith("not speech") for p in static["signal_problems"])
    assert all(not a["signal_problems"] for r in (reports[0], reports[2]) for a in r["attempts"])
    if gate:  # the static fails the gate; seed 102 speaks and is kept
        assert [r["tries"] for r in reports] == [1, 2, 1] and reports[1]["seed"] == 102 and reports[1]["passed"]
    else:  # recorded, but not a failure without the gate
        assert [r["tries"] for r in reports] == [1, 1, 1] and static["passed"]
