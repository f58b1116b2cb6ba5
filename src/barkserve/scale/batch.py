"""Mass generation: every item of a JSONL file to an audio file, locally or on a Ray Data actor pool.

Both ways run the same `make_item` on a `Synthesizer` with the same settings, so an item's audio
depends on its text, voice, options and seed only, not on where it ran. The driver alone writes
files and the manifest, atomically and in that order, so a run killed at any point resumes by
skipping what the manifest names and the disk still holds.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barkserve.audio.encode import encode
from barkserve.audio.files import atomic_write
from barkserve.config import ServerConfig
from barkserve.errors import is_retryable
from barkserve.scale.items import BatchItem, Manifest
from barkserve.synthesizer import Synthesizer

# Tries of an item whose failure may pass (`errors.is_retryable`); a bad request is tried once.
DEFAULT_ATTEMPTS = 3

OnRecord = Callable[[dict[str, Any]], None]


@dataclass
class BatchReport:
    """What a run did: items skipped as done, made now, and failed (with their records)."""

    total: int
    skipped: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def make_item(synth: Synthesizer, item: BatchItem, attempts: int = DEFAULT_ATTEMPTS) -> tuple[dict[str, Any], bytes]:
    """Generate one item (retrying a failure that may pass): its manifest record and its file's bytes.

    Voice, model, format and options are checked as `barkserve book` checks a job (`prepare_job`).
    A failed item has status "failed", an error code and message, and empty bytes.
    """
    from barkserve.jobs.submit import prepare_job

    started, error, attempt = time.time(), None, 0
    for attempt in range(1, attempts + 1):
        tick = time.perf_counter()
        try:
            request = prepare_job(synth, item.text, item.voice, item.model, item.format, item.options)
            result = synth.synthesize(request.text, request.voice, request.model, request.options)
            data = encode(result.audio, result.sample_rate, request.format)
        except Exception as exc:
            error = {"code": getattr(exc, "code", type(exc).__name__), "message": str(exc) or repr(exc)}
            if is_retryable(exc):  # an engine, device or replica failure: tried again
                continue
            break  # the same request would meet it again: retrying only wastes the engine
        record = {
            **_base_record(item, started, attempt),
            "status": "ok",
            "voice": result.voice,
            "model": result.model,
            "sample_rate": result.sample_rate,
            "chunks": result.chunk_count,
            "duration_sec": round(result.duration_sec, 4),
            "processing_sec": round(time.perf_counter() - tick, 4),
            "bytes": len(data),
        }
        return record, data
    return {**_base_record(item, started, attempt), "status": "failed", "error": error}, b""


def _base_record(item: BatchItem, started: float, attempts: int) -> dict[str, Any]:
    return {
        "id": item.id,
        "line": item.line,
        "file": item.filename,
        "fingerprint": item.fingerprint,
        "seed": item.options["seed"],
        "format": item.format,
        "attempts": attempts,
        "started_at": round(started, 3),
        "finished_at": round(time.time(), 3),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def save_outcome(manifest: Manifest, record: dict[str, Any], data: bytes) -> None:
    """The file first (atomically), then its record: a record never names a missing or partial file."""
    if record["status"] == "ok":
        atomic_write(manifest.out_dir / record["file"], lambda f: f.write(data))
    manifest.append(record)


def run_batch(
    items: list[BatchItem],
    out_dir: Path,
    results: Callable[[list[BatchItem]], Iterator[tuple[dict[str, Any], bytes]]],
    on_record: OnRecord | None = None,
) -> BatchReport:
    """Make the items not yet done through `results` (local or Ray), saving each as it arrives."""
    manifest = Manifest(out_dir)
    pending = manifest.pending(items)
    pending_ids = {item.id for item in pending}
    report = BatchReport(total=len(items), skipped=[i.id for i in items if i.id not in pending_ids])
    if not pending:
        return report
    for record, data in results(pending):
        save_outcome(manifest, record, data)
        if record["status"] == "ok":
            report.made.append(record["id"])
        else:
            report.failed.append(record)
        if on_record is not None:
            on_record(record)
    return report


def local_results(
    synth: Synthesizer, attempts: int = DEFAULT_ATTEMPTS
) -> Callable[[list[BatchItem]], Iterator[tuple[dict[str, Any], bytes]]]:
    """Run items on this machine's engine, up to `max_batch_size` at once so the engine batches them."""

    def run(items: list[BatchItem]) -> Iterator[tuple[dict[str, Any], bytes]]:
        workers = synth.config.engine.max_batch_size
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch") as pool:
            queue, running = iter(items), set[Future[tuple[dict[str, Any], bytes]]]()
            try:
                for item in queue:
                    running.add(pool.submit(make_item, synth, item, attempts))
                    if len(running) < workers:
                        continue
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
                while running:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            finally:  # stopped early (Ctrl-C, a hook): drop what has not started
                pool.shutdown(wait=True, cancel_futures=True)

    return run


class EngineWorker:
    """A Ray Data actor: one Synthesizer (one model load, one batched engine) for all its batches."""

    def __init__(self, config: ServerConfig, attempts: int) -> None:
        self.synth = Synthesizer(config)
        self.attempts = attempts
        self.pool = ThreadPoolExecutor(max_workers=config.engine.max_batch_size, thread_name_prefix="batch")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Items of one batch, together (the engine batches them): records and bytes, in order."""
        items = [BatchItem(**json.loads(raw)) for raw in batch["item"]]
        outcomes = list(self.pool.map(lambda item: make_item(self.synth, item, self.attempts), items))
        return {"record": [json.dumps(r) for r, _ in outcomes], "data": [d for _, d in outcomes]}


def ray_results(
    config: ServerConfig,
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    cpus_per_replica: float = 1.0,
    attempts: int = DEFAULT_ATTEMPTS,
) -> Callable[[list[BatchItem]], Iterator[tuple[dict[str, Any], bytes]]]:
    """Run items on a Ray Data pool of `replicas` engine actors (call `scale.connect` first)."""

    def run(items: list[BatchItem]) -> Iterator[tuple[dict[str, Any], bytes]]:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Spread the items over the actors; never more in one batch than the engine runs at once.
        size = max(1, min(config.engine.max_batch_size, math.ceil(len(items) / replicas)))
        dataset = ray.data.from_items([{"item": json.dumps(item.to_dict())} for item in items])
        made = dataset.map_batches(
            EngineWorker,
            fn_constructor_kwargs={"config": config, "attempts": attempts},
            batch_size=size,
            batch_format="numpy",
            concurrency=replicas,
            num_gpus=gpus_per_replica,
            num_cpus=cpus_per_replica,
        )
        for row in made.iter_rows():
            yield json.loads(row["record"]), bytes(row["data"])

    return run
