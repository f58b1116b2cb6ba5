"""POST /v1/audio/speech/batch: up to 32 speeches in one request, checked together, generated together.

Every item is checked (fields, format, voice, model, options, text) and planned before any is generated,
so a batch with one bad item makes nothing. The items then run at once, one thread each, through the
synthesizer's `pieces`: their chunks reach the engine together and its scheduler batches them (items
of one voice or of many). Each item is answered on its own: its audio or its error, and its usage.
"""

from __future__ import annotations

import base64
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from barkserve.audio.encode import AudioFormat, encode
from barkserve.captions.align import Aligner
from barkserve.errors import BarkServeError, InvalidRequest, NoSpeech, TextTooLong
from barkserve.server.captioning import live_captions, timestamps_json
from barkserve.server.streams import speech_usage
from barkserve.synthesizer import SynthesisPlan, Synthesizer

log = logging.getLogger(__name__)
MAX_ITEMS = 32


@dataclass(frozen=True, eq=False)
class BatchItem:
    """One checked item: its plan, its format, and whether (and with which aligner) it is timed."""

    index: int
    plan: SynthesisPlan
    fmt: AudioFormat
    timestamps: bool = False
    aligner: Aligner | None = None
    warnings: tuple[str, ...] = ()  # why words are not timed, when they are not


def batch_items(body: dict[str, Any], max_chars: int) -> list[tuple[int, dict[str, Any]]]:
    """The `items` of a batch body, each a JSON object, their inputs within `max_chars` together."""
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        got = f"a list of {len(items)}" if isinstance(items, list) else repr(items)[:40]
        raise InvalidRequest(f"items must be a list of 1 to {MAX_ITEMS} speech requests; got {got}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"items[{index}] must be a JSON object like POST /v1/audio/speech's body")
    total = sum(len(item["input"]) for item in items if isinstance(item.get("input"), str))
    if total > max_chars:
        raise TextTooLong(
            f"the items' inputs are {total} characters together; the maximum is {max_chars} "
            "(setting speech_batch_max_chars): send fewer items, or use POST /jobs for long text"
        )
    return list(enumerate(items))


def for_item(index: int, exc: BarkServeError) -> BarkServeError:
    """`exc` with its message naming the item it is about (its class, so its status, unchanged)."""
    exc.message = f"items[{index}]: {exc.message}"
    exc.args = (exc.message,)
    return exc


def run_batch(synthesizer: Synthesizer, items: list[BatchItem]) -> dict[str, Any]:
    """Generate every item at once; the answer: each item's audio or error, and the usage of all."""
    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="batch") as pool:
        answers = list(pool.map(lambda item: run_item(synthesizer, item), items))
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    for answer in answers:
        for key in usage:
            usage[key] += answer.get("usage", {}).get(key, 0)
    seconds = sum(answer.get("duration_sec", 0.0) for answer in answers)
    failed = sum("error" in answer for answer in answers)
    return {"object": "list", "data": answers, "failed": failed, "duration_sec": round(seconds, 3), "usage": usage}


def run_item(synthesizer: Synthesizer, item: BatchItem) -> dict[str, Any]:
    """One item's answer: its audio (base64) and usage, or its error; it never raises."""
    plan = item.plan
    try:
        times = live_captions(plan, item.aligner) if item.timestamps else None
        parts = []
        for piece in synthesizer.pieces(plan, None):  # all its chunks go to the engine at once
            parts.append(piece)
            if times is not None:
                times.add(piece)
        if not any(plan.generated_samples):
            raise NoSpeech()
        audio = np.concatenate(parts)
        data = encode(audio, plan.info.sample_rate, item.fmt)
    except BarkServeError as exc:
        return {"index": item.index, "error": {"code": exc.code, "message": exc.message}}
    except Exception:  # one item's failure is its own: the others keep their audio
        log.exception("batch item %d failed", item.index)
        return {"index": item.index, "error": {"code": "internal_error", "message": "see the server log"}}
    answer: dict[str, Any] = {
        "index": item.index,
        "audio": base64.b64encode(data).decode("ascii"),
        "response_format": item.fmt.name,
        "duration_sec": round(len(audio) / plan.info.sample_rate, 3),
        "seed": plan.info.seed,
        "chunks": len(plan.info.chunks),
        "usage": speech_usage(plan),
    }
    if times is not None:
        answer.update(timestamps_json(times.cues), warnings=[*item.warnings, *times.warnings])
    return answer
