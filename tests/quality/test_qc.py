"""Quality control's loop: retries with the next seeds, best of the tries, records; off changes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from barkserve.config import ServerConfig
from barkserve.errors import InvalidRequest
from barkserve.options import SynthesisOptions
from barkserve.qc import ChunkScore, QualityCheck, best_of
from barkserve.synthesizer import Synthesizer
from support import FakeEngine

LONG = "and it keeps going with enough words that no two of these sentences ever fit into one chunk together"
TEXT = f"The first sentence is fine {LONG}. The second one goes wrong at first {LONG}. The third is fine {LONG}."


class ScriptedJudge:
    """Scores by seed, `errors[seed]` for chunks whose text has `only` (else 0.0); records what it was asked."""

    def __init__(self, errors: dict[int, float] | None = None, only: str = "", similarity: float | None = None) -> None:
        self.errors, self.only, self.similarity = errors or {}, only, similarity
        self.calls: list[tuple[float, str, Any]] = []

    def score(self, audio: np.ndarray, rate: int, text: str, language: str | None, reference: Any) -> ChunkScore:
        seed = round(float(audio[len(audio) // 2]) * 2000)  # FakeEngine's level is (seed % 1000) / 2000
        self.calls.append((seed, text, reference))
        embedding = np.array([1.0, float(seed)])
        error = self.errors.get(seed, 0.0) if self.only in text else 0.0
        return ChunkScore(error=error, similarity=self.similarity, embedding=embedding)


def test_a_failing_chunk_is_tried_exactly_tries_times_with_the_next_seeds_and_the_best_is_kept() -> None:
    made: list[int] = []
    errors = {10: 0.9, 11: 0.5, 12: 0.7}

    def generate(seed: int) -> int:
        made.append(seed)
        return seed

    kept, report = best_of(generate, lambda s: np.array([s]), 10, lambda a: ChunkScore(error=errors[int(a[0])]),
                           QualityCheck(max_error=0.3, tries=3), index=4)  # fmt: skip
    assert made == [10, 11, 12]
    assert kept == 11 and report.kept == 1 and not report.passed and report.index == 4
    assert [a.seed for a in report.attempts] == [10, 11, 12]
    assert all("speech error" in a.failures[0] for a in report.attempts)


def test_the_first_passing_try_stops_the_retries() -> None:
    made: list[int] = []
    errors = {5: 0.9, 6: 0.1}
    kept, report = best_of(lambda s: made.append(s) or s, lambda s: np.array([s]), 5,
                           lambda a: ChunkScore(error=errors[int(a[0])]), QualityCheck(max_error=0.3, tries=5),
                           first=5)  # fmt: skip
    assert made == [6]  # the first output was given, one retry made it pass
    assert kept == 6 and report.passed and report.to_dict()["tries"] == 2 and report.to_dict()["seed"] == 6


def synth_with(judge: ScriptedJudge, tiny_model_dir: Any, tmp_path: Any) -> Synthesizer:
    config = ServerConfig(model=str(tiny_model_dir), voices_dir=tmp_path, offline=True)
    return Synthesizer(config, engine_factory=FakeEngine, judge=judge)


def test_synthesis_regenerates_the_failing_chunk_and_records_it(tiny_model_dir: Any, tmp_path: Any) -> None:
    judge = ScriptedJudge(errors={101: 0.8, 102: 0.6}, only="second")  # chunk 1 fails twice, then passes
    synth = synth_with(judge, tiny_model_dir, tmp_path)
    qc = {"max_error": 0.3, "tries": 4}
    result = synth.synthesize(TEXT, options={"seed": 100, "sentence_pause_sec": 0.0, "qc": qc})
    engine = synth.engine(synth.config.default_model)
    seeds = sorted(r.options.seed for r in engine.requests)
    assert result.chunk_count == 3
    assert seeds == [100, 101, 102, 102, 103]  # chunk 2's own seed is 102 too: seeds stay per chunk
    reports = [r.to_dict() for r in result.qc]
    assert [r["tries"] for r in reports] == [1, 3, 1] and all(r["passed"] for r in reports)
    assert reports[1]["seed"] == 103 and [a["seed"] for a in reports[1]["attempts"]] == [101, 102, 103]
    # The kept generation of chunk 1 is in the audio: FakeEngine's samples carry their seed.
    values, counts = np.unique(result.audio, return_counts=True)
    levels = {round(float(v) * 2000) for v in values[counts > 1000]}  # the flat middle of each chunk
    assert 103 in levels and 101 not in levels
    # Later chunks are compared with the first accepted chunk's voice.
    assert judge.calls[0][2] is None and all(np.array_equal(ref, [1.0, 100.0]) for _, _, ref in judge.calls[1:])


def test_quality_control_off_changes_nothing(tiny_model_dir: Any, tmp_path: Any) -> None:
    plain = synth_with(ScriptedJudge(), tiny_model_dir, tmp_path).synthesize(TEXT, options={"seed": 7})
    checked = synth_with(ScriptedJudge(), tiny_model_dir, tmp_path).synthesize(TEXT, options={"seed": 7, "qc": True})
    assert plain.qc == () and len(checked.qc) == plain.chunk_count
    assert plain.audio.tobytes() == checked.audio.tobytes()  # every chunk passed at its first try


@pytest.mark.parametrize(
    ("qc", "needle"),
    [({"max_error": -1}, "max_error"), ({"tries": 0}, "tries"), ({"tries": 1.5}, "tries"),
     ({"min_similarity": 2}, "min_similarity"), ({"colour": 1}, "unknown qc field"), ("yes", "qc must be")],
)  # fmt: skip
def test_bad_quality_checks_are_refused(qc: object, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        SynthesisOptions.from_dict({"qc": qc})


def test_options_round_trip_through_plain_json() -> None:
    opts = SynthesisOptions.from_dict({"seed": 3, "qc": {"max_error": 0.2}})
    assert SynthesisOptions.from_dict(opts.to_dict()) == opts
    assert "qc" not in SynthesisOptions(seed=3).to_dict()  # stored jobs keep their fingerprint


def test_quality_control_through_the_real_scorers_on_tiny_checkpoints(make_app: Any, tiny_scorers: Any) -> None:
    asr, speaker = tiny_scorers
    app = make_app(FakeEngine, asr_model=str(asr), speaker_model=str(speaker))
    body = {"text": TEXT, "seed": 11, "qc": {"max_error": 10, "min_similarity": -1, "tries": 2}}
    response = app.test_client().post("/synthesize", json=body)
    assert response.status_code == 200, response.data
    reports = response.get_json()["qc"]
    assert len(reports) == response.get_json()["chunks"] == 3
    first, *later = [r["attempts"][0] for r in reports]
    assert isinstance(first["transcript"], str) and first["error"] is not None
    assert first["similarity"] is None  # nothing to compare the first chunk with
    assert all(a["similarity"] is not None and -1 <= a["similarity"] <= 1.0001 for a in later)
    plain = app.test_client().post("/synthesize", json={"text": TEXT, "seed": 11}).get_json()
    assert "qc" not in plain  # the seed contract is unchanged without qc


def test_quality_control_off_on_a_server_without_scorer_models(make_app: Any) -> None:
    response = make_app(FakeEngine).test_client().post("/synthesize", json={"text": "Hi.", "qc": True})
    assert response.status_code == 400 and "asr_model" in response.get_json()["error"]["message"]


def test_a_job_records_each_chunks_quality_control(make_app: Any, tiny_scorers: Any) -> None:
    asr, speaker = tiny_scorers
    app = make_app(FakeEngine, asr_model=str(asr), speaker_model=str(speaker))
    client = app.test_client()
    checked = client.post("/jobs", json={"text": TEXT, "seed": 4, "qc": {"max_error": 10, "tries": 2}}).get_json()
    plain = client.post("/jobs", json={"text": TEXT, "seed": 4}).get_json()
    runner = app.extensions["barkserve"].runner
    while runner.run_once():
        pass
    rows = client.get(f"/jobs/{checked['id']}/chunks").get_json()["chunks"]
    assert [r["qc"]["index"] for r in rows] == [0, 1, 2] and all(r["qc"]["tries"] == 1 for r in rows)
    assert all(isinstance(r["qc"]["attempts"][0]["transcript"], str) for r in rows)
    assert all("qc" not in r for r in client.get(f"/jobs/{plain['id']}/chunks").get_json()["chunks"])
