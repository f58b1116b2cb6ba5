"""`barkserve batch` on this machine: input checks by line, per-item failures, retries, resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.config import EngineConfig
from barkserve.engine.batched import BatchedEngine
from barkserve.errors import BatchInputError, ModelUnavailable, NoSpeech, ReplicaLost
from barkserve.scale.batch import local_results, make_item, run_batch
from barkserve.scale.items import MANIFEST, Manifest, parse_line, read_items
from barkserve.synthesizer import Synthesizer
from support import server_config

SHORT = {"max_duration_sec": 0.2}


def write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps({**SHORT, **r}) for r in rows) + "\n")
    return path


def cli_flags(model_dir: Path, root: Path) -> list[str]:
    return ["--model", str(model_dir), "--offline", "--device", "cpu", "--voices-dir", str(root / "voices")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ('{"voice": 3}', "needs a non-empty string field 'text'"),
        ('{"text": "  "}', "needs a non-empty string field 'text'"),
        ('{"text": "hi", "id": "../escape"}', "id must be"),
        ('{"text": "hi", "format": "mp4"}', "format must be one of"),
        ('{"text": "hi", "sede": 3}', "unknown synthesis option(s) ['sede']"),
        ('{"text": "hi", "seed": -1}', "seed must be an integer"),
        ('{"text": "hi", "model": 5}', "model must be a string"),
    ],
)
def test_each_kind_of_bad_line_is_named(line: str, expected: str) -> None:
    with pytest.raises(BatchInputError) as info:
        parse_line(7, line)
    assert expected in info.value.message


def test_bad_lines_are_all_reported_by_number_before_anything_runs(tmp_path: Path, tiny_model_dir: Path) -> None:
    good = {"text": "Fine."}
    path = write_jsonl(tmp_path / "in.jsonl", [good, "{oops", "", {"text": ""}, {"text": "x", "id": "line-1"}])
    with pytest.raises(BatchInputError) as info:
        read_items(path)
    message = info.value.message
    assert "3 bad line(s)" in message and "line 2: not valid JSON" in message
    assert "line 4: needs a non-empty string" in message and "line 5: id 'line-1' is already used on line 1" in message
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), *cli_flags(tiny_model_dir, tmp_path)])
    assert result.exit_code == 1 and "line 2: not valid JSON" in result.output
    assert not out.exists()  # nothing generated, not even the manifest


def test_seeds_are_fixed_per_item_so_reruns_and_retries_repeat() -> None:
    first, again = parse_line(1, '{"text": "Same."}'), parse_line(1, '{"text": "Same."}')
    other = parse_line(1, '{"text": "Other."}')
    assert first.options["seed"] == again.options["seed"] != other.options["seed"]
    assert parse_line(1, '{"text": "Same.", "seed": 5}').options["seed"] == 5


def test_unknown_voice_fails_that_item_and_the_others_finish(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [{"text": "One.", "seed": 1}, {"text": "Two.", "voice": "nobody"}, {"text": "Three.", "format": "flac"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), *cli_flags(tiny_model_dir, tmp_path)])
    assert result.exit_code == 1 and "line 2 (line-2) failed: invalid_voice" in result.output
    records = Manifest(out).records()
    assert records["line-2"]["status"] == "failed" and records["line-2"]["attempts"] == 1  # not worth retrying
    assert "unknown voice 'nobody'" in records["line-2"]["error"]["message"]
    assert not (out / "line-2.wav").exists()
    for item_id, name in (("line-1", "line-1.wav"), ("line-3", "line-3.flac")):
        record = records[item_id]
        assert record["status"] == "ok" and record["file"] == name and record["duration_sec"] > 0
        assert (out / name).stat().st_size == record["bytes"] and record["processing_sec"] > 0


class FlakyEngine:
    """The batched engine, failing the first `failures` requests it gets."""

    def __init__(self, inner: BatchedEngine, failures: int, error: Exception | None = None) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0
        self.error = error or RuntimeError("CUDA error: an illegal memory access was encountered")
        self.sample_rate = inner.sample_rate

    def tokenize(self, text: str) -> Any:
        return self.inner.tokenize(text)

    def load(self) -> Any:
        return self.inner.load()

    def close(self) -> None:
        self.inner.close()

    def generate(self, request: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.inner.generate(request)


@pytest.mark.parametrize(("failures", "status", "attempts"), [(1, "ok", 2), (5, "failed", 3)])
def test_engine_failures_are_retried_a_bounded_number_of_times(
    tmp_path: Path, tiny_model_dir: Path, tiny_loaded: Any, failures: int, status: str, attempts: int
) -> None:
    config = server_config(tiny_model_dir, tmp_path, device="cpu")
    engines: list[FlakyEngine] = []

    def factory(loaded: Any) -> FlakyEngine:
        engines.append(FlakyEngine(BatchedEngine(tiny_loaded), failures))
        return engines[-1]

    with Synthesizer(config, engine_factory=factory) as synth:
        record, data = make_item(synth, parse_line(1, json.dumps({"text": "Hi.", **SHORT})), attempts=3)
    assert record["status"] == status and record["attempts"] == attempts and engines[0].calls == attempts
    if status == "failed":
        assert data == b"" and record["error"] == {
            "code": "RuntimeError",
            "message": "CUDA error: an illegal memory access was encountered",
        }
    else:
        assert data[:4] == b"RIFF" and len(data) == record["bytes"]


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (ReplicaLost("the replica died"), 2),  # passes: tried again, as a job's chunk would be
        (ModelUnavailable("out of memory while loading"), 2),
        (OSError(28, "No space left on device"), 1),  # the same wall again: as a job, not retried
        (NoSpeech(), 1),
    ],
)
def test_batch_retries_what_a_job_retries(
    tmp_path: Path, tiny_model_dir: Path, tiny_loaded: Any, error: Exception, attempts: int
) -> None:
    config = server_config(tiny_model_dir, tmp_path, device="cpu")
    engines: list[FlakyEngine] = []

    def factory(loaded: Any) -> FlakyEngine:
        engines.append(FlakyEngine(BatchedEngine(tiny_loaded), 1, error))
        return engines[-1]

    with Synthesizer(config, engine_factory=factory) as synth:
        record, _ = make_item(synth, parse_line(1, json.dumps({"text": "Hi.", **SHORT})), attempts=3)
    assert record["attempts"] == attempts and engines[0].calls == attempts
    assert record["status"] == ("ok" if attempts == 2 else "failed")


class Stop(Exception):
    """The hook's stand-in for a kill: raised after the nth saved item."""


def test_a_killed_run_resumes_without_regenerating_finished_items(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": f"Item {i}.", "id": f"item-{i}"} for i in range(5)])
    items, out = read_items(path), tmp_path / "out"
    config = server_config(tiny_model_dir, tmp_path, device="cpu", engine=EngineConfig(max_batch_size=2))
    saved: list[str] = []

    def kill_after_two(record: dict[str, Any]) -> None:
        saved.append(record["id"])
        if len(saved) == 2:
            raise Stop

    with Synthesizer(config) as synth, pytest.raises(Stop):
        run_batch(items, out, local_results(synth), on_record=kill_after_two)
    before = {name: (out / f"{name}.wav").stat() for name in saved}
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(f"{n}.wav" for n in saved)  # no partial files
    # The manifest ends with a torn line, as a kill during its write would leave it.
    with (out / MANIFEST).open("a") as f:
        f.write('{"id": "item-4", "status": "o')
    # One finished file went missing: it is made again; a changed line too.
    (out / f"{saved[1]}.wav").unlink()
    with Synthesizer(config) as synth:
        report = run_batch(read_items(path), out, local_results(synth))
    unfinished = [i.id for i in items if i.id not in saved]
    assert report.skipped == [saved[0]] and sorted(report.made) == sorted([saved[1], *unfinished])
    assert (out / f"{saved[0]}.wav").stat().st_mtime_ns == before[saved[0]].st_mtime_ns
    records = Manifest(out).records()
    assert sorted(records) == [f"item-{i}" for i in range(5)] and {r["status"] for r in records.values()} == {"ok"}
    write_jsonl(
        path, [{"text": f"Item {i}.", "id": f"item-{i}"} for i in range(4)] + [{"text": "New.", "id": "item-4"}]
    )
    with Synthesizer(config) as synth:
        report = run_batch(read_items(path), out, local_results(synth))
    assert report.made == ["item-4"] and len(report.skipped) == 4
