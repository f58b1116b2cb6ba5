"""`quantizer make-dataset --ray` and `book --ray`: the same files as on one machine, and resuming after a
kill without making anything twice, on a local 2-CPU cluster started once for this module (tiny checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray_gate
from click.testing import CliRunner

from barkserve.cli import main
from barkserve.cli.book import BookProgress
from barkserve.cloning import dataset
from barkserve.config import ServerConfig
from barkserve.errors import DatasetError
from barkserve.scale.book import RayChunks
from barkserve.scale.dataset import RayBatches
from bookfiles import CHAPTERS, make_epub

pytestmark = pytest.mark.slow
REPLICA_CPUS = "0.5"  # one CPU thread per actor, as the plain path in `one_thread` (see test_ray.py)
# Chapter 2 is long enough for three chunks (a segment whose chunks depend on each other with
# --carry-history); chapter 3 has two voices (two segments that start each from its own voice).
LONG = " ".join(f"Rain fell on the harbour for day {n} while the village waited by the fires, counting boats."
                for n in ("one", "two", "three"))  # fmt: skip
TAGGED = (CHAPTERS[0], ("The Storm", LONG), ("The Return", "When the sky cleared, [voice:v2/en_speaker_2] they came."))
TEXTS = ["Hello there.", "A second sentence, a little longer.", "Third."]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every audio and token file of a dataset folder, by its path there."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*")) if p.suffix != ".tmp"}


def test_make_dataset_on_ray_makes_the_same_dataset(
    ray_cluster: Any, one_thread: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    flags = ["--model", str(tiny_model_dir), "--device", "cpu", "--offline", "--batch-size", "2", "-n", "5",
             "--max-semantic-tokens", "16", "--texts", str(texts)]  # fmt: skip
    local = CliRunner().invoke(main, ["quantizer", "make-dataset", "--out", str(tmp_path / "local"), *flags])
    on_ray = CliRunner().invoke(main, ["quantizer", "make-dataset", "--out", str(tmp_path / "ray"), *flags, "--ray",
                                       "--ray-replicas", "2", "--ray-cpus-per-replica", REPLICA_CPUS])  # fmt: skip
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    mine, theirs = files_of(tmp_path / "local"), files_of(tmp_path / "ray")
    assert len(mine) == 10 and theirs == mine  # 5 items, a .wav and a .npy each, byte for byte
    manifest = (tmp_path / "ray" / "manifest.tsv").read_text().splitlines()[1:]
    assert manifest == (tmp_path / "local" / "manifest.tsv").read_text().splitlines()[1:]


class Stop(Exception):
    """The progress hook's stand-in for a kill."""


def test_a_short_item_moves_the_plan_and_a_killed_run_resumes(
    ray_cluster: Any, one_thread: None, tmp_path: Path, tiny_model_dir: Path, tiny_loaded: Any
) -> None:
    options = dataset.DatasetOptions(n=6, batch_size=2, max_semantic_tokens=16)
    short = dataset.batch_seed(options, 0, 0)  # the first batch's second item (item 1) comes back too short
    config = ServerConfig(model=str(tiny_model_dir), device="cpu", offline=True, asr_model="", speaker_model="")
    plain = dataset.local_batches(tiny_loaded, TEXTS, options)

    def local(key: dataset.BatchKey, ahead: list[dataset.BatchKey]) -> list[Any]:
        return ray_gate.shorten(key[1], short, plain(key, ahead))

    dataset.make_dataset(tiny_loaded, TEXTS, tmp_path / "local", options, batches=local)

    def pool() -> RayBatches:
        worker = ray_gate.short_worker(short)
        return RayBatches(config, TEXTS, options, replicas=2, cpus_per_replica=float(REPLICA_CPUS), worker=worker)

    saved: list[int] = []

    def kill_after_two_batches(count: int) -> None:
        saved.append(count)
        if len(saved) == 2:
            raise Stop

    out = tmp_path / "ray"
    with pool() as first, pytest.raises(Stop):
        dataset.make_dataset(first.model(), TEXTS, out, options, on_progress=kill_after_two_batches, batches=first)
    # Batch (0, 1) gave item 0 only: the loop's next batch is (1, 2), not the (2, 3) started ahead.
    assert first.started[:2] == [((0, 1), short), ((2, 3), dataset.batch_seed(options, 2, 0))]
    assert ((1, 2), dataset.batch_seed(options, 1, 0)) in first.started
    finished = sorted(p.stem for p in (out / "audio").glob("*.wav"))
    assert finished == ["000000", "000001", "000002"]  # two batches saved: item 0, then items 1 and 2
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*")}
    with pool() as second:
        dataset.make_dataset(second.model(), TEXTS, out, options, batches=second)
    assert all(i >= 3 for key, _ in second.started for i in key)  # nothing finished was sent again
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert files_of(out) == files_of(tmp_path / "local")


@pytest.mark.parametrize(("failures", "made"), [(1, True), (3, False)])
def test_a_failing_batch_is_sent_again_a_bounded_number_of_times(
    ray_cluster: Any, tmp_path: Path, tiny_model_dir: Path, failures: int, made: bool
) -> None:
    options = dataset.DatasetOptions(n=2, batch_size=2, max_semantic_tokens=16)
    config = ServerConfig(model=str(tiny_model_dir), device="cpu", offline=True, asr_model="", speaker_model="")
    worker = ray_gate.flaky_worker(tmp_path / "calls", failures)
    with RayBatches(config, TEXTS, options, cpus_per_replica=float(REPLICA_CPUS), attempts=2, worker=worker) as pool:
        if made:
            dataset.make_dataset(pool.model(), TEXTS, tmp_path / "ds", options, batches=pool)
        else:
            with pytest.raises(DatasetError) as info:
                dataset.make_dataset(pool.model(), TEXTS, tmp_path / "ds", options, batches=pool)
            assert "batch of items [0, 1] failed 2 time(s)" in info.value.message and "CUDA error" in info.value.message
    assert pool.started == [((0, 1), dataset.batch_seed(options, 0, 0))] * 2
    assert (tmp_path / "calls").read_text() == "2"
    assert sorted(p.name for p in (tmp_path / "ds" / "audio").glob("*.wav")) == (
        ["000000.wav", "000001.wav"] if made else []
    )


def book_args(tmp_path: Path, model_dir: Path, name: str, *extra: str) -> list[str]:
    epub = make_epub(tmp_path / "b.epub", chapters=TAGGED)
    out = tmp_path / name / "book.m4b"
    folders = ["--model", str(model_dir), "--offline", "--device", "cpu", "--jobs-dir", str(tmp_path / name / "jobs")]
    return ["book", str(epub), "-o", str(out), "--captions", "srt", "--seed", "9", "--max-duration", "0.2", *folders,
            *extra]  # fmt: skip


def chunk_files(tmp_path: Path, name: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / name / "jobs").glob("*/chunk_*.npz"))]


RAY_FLAGS = ["--ray", "--ray-replicas", "2", "--ray-cpus-per-replica", REPLICA_CPUS]


@pytest.mark.parametrize("carry", ["--fixed-voice", "--carry-history"])
def test_book_on_ray_is_the_local_book_and_resumes_after_a_kill(
    ray_cluster: Any,
    one_thread: None,
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    carry: str,
) -> None:
    local = CliRunner().invoke(main, book_args(tmp_path, tiny_model_dir, "local", carry))
    assert local.exit_code == 0, local.output
    pools: list[RayChunks] = []
    monkeypatch.setattr(RayChunks, "close", lambda self, close=RayChunks.close: (pools.append(self), close(self))[1])
    progress = BookProgress.update

    def killed_after_two(self: BookProgress, job: Any) -> None:
        progress(self, job)
        if job.chunks_done == 2 and not pools:
            raise KeyboardInterrupt

    monkeypatch.setattr(BookProgress, "update", killed_after_two)
    first = CliRunner().invoke(main, [*book_args(tmp_path, tiny_model_dir, "ray", carry), *RAY_FLAGS])
    assert first.exit_code == 130 and "stopped at 2/6 chunks" in first.output, first.output
    again = CliRunner().invoke(main, [*book_args(tmp_path, tiny_model_dir, "ray", carry), *RAY_FLAGS])
    assert again.exit_code == 0 and "resuming job" in again.output, again.output
    # The second run sent only the chunks not recorded as done: chapter 2's last two (in order on one
    # actor, from the history the recorded first one left, when carried) and chapter 3's two segments.
    resumed = [(1, (1, 2))] if carry == "--carry-history" else [(1, (1,)), (1, (2,))]
    assert pools[1].sent == [*resumed, (2, (0,)), (3, (0,))] and not pools[1].made_here
    assert chunk_files(tmp_path, "ray") == chunk_files(tmp_path, "local")
    for name in ("book.m4b", "book.srt"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_a_chunk_whose_actor_dies_is_retried_by_the_job(ray_cluster: Any, tmp_path: Path, tiny_model_dir: Path) -> None:
    from barkserve.books import read_book
    from barkserve.cli.book import run_book
    from barkserve.jobs import JobStore
    from barkserve.jobs.submit import prepare_book_job
    from barkserve.synthesizer import Synthesizer

    epub = make_epub(tmp_path / "b.epub", chapters=CHAPTERS[:2])
    config = ServerConfig(model=str(tiny_model_dir), device="cpu", offline=True, jobs_dir=tmp_path / "jobs",
                          asr_model="", speaker_model="", max_duration_sec=0.2)  # fmt: skip
    marker = tmp_path / "died"
    with Synthesizer(config) as synth:
        request = prepare_book_job(synth, read_book(epub.read_bytes(), epub.name), options={"seed": 3})
        worker = ray_gate.dying_worker(marker)
        with RayChunks(config, cpus_per_replica=float(REPLICA_CPUS), worker=worker) as chunks:
            run_book(synth, config, request, tmp_path / "book.m4b", chunks=chunks)
    assert marker.exists() and (tmp_path / "book.m4b").stat().st_size > 0
    store = JobStore(config.database)
    (job,), _ = store.page(10, 0)
    assert job.state == "succeeded"
    assert [c.attempts for c in store.chunks(job.id)] == [2, 1]  # the first chunk, once more after the death
    assert chunks.sent == [(0, (0,)), (1, (0,)), (0, (0,)), (1, (0,))]  # the job's second claim sent both again
