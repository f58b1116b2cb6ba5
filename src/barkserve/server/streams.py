"""Streamed speech: progress records for `GET /v1/audio/speech/<id>` and OpenAI's server-sent events."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from barkserve.bark import CODEC_FRAME_RATE_HZ
from barkserve.synthesizer import SynthesisPlan

KEEP_STREAMS = 200


class StreamLog:
    """A bounded, thread-safe record of streamed requests: chunks done, audio seconds, times."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._live: dict[str, Callable[[], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def start(self, total: int, live: Callable[[], dict[str, Any]] | None = None) -> str:
        """A new record of `total` chunks; `live()` gives fields read at each `get` until it finishes."""
        sid = uuid.uuid4().hex
        with self._lock:
            self._items[sid] = {"id": sid, "chunks_total": total, "chunks_done": 0, "audio_sec": 0.0,
                                "started_at": time.time(), "finished_at": None, "error": None}  # fmt: skip
            if live is not None:
                self._live[sid] = live
            while len(self._items) > KEEP_STREAMS:
                self._live.pop(self._items.popitem(last=False)[0], None)
        return sid

    def update(self, sid: str, **changes: Any) -> None:
        with self._lock:
            if sid in self._items:
                self._items[sid].update(changes)

    def finish(self, sid: str, **changes: Any) -> None:
        """End a record: its live fields are read a last time and kept, and `finished_at` is set."""
        with self._lock:
            live = self._live.pop(sid, None)
            if sid in self._items:
                self._items[sid].update(live() if live else {}, **changes, finished_at=time.time())

    def get(self, sid: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(sid)
            live = self._live.get(sid)
            return {**item, **(live() if live else {})} if item else None


def sse_event(payload: dict[str, Any]) -> bytes:
    """One server-sent event as OpenAI sends them: a `data:` line of JSON (its `type` inside) and a blank line."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def speech_usage(plan: SynthesisPlan) -> dict[str, int]:
    """OpenAI's `usage` of a finished speech: Bark's text tokens in, its codec frames (75 a second) out."""
    rate = plan.info.sample_rate
    text_tokens = sum(len(ids) for ids in plan.token_ids)
    frames = sum(round(samples * CODEC_FRAME_RATE_HZ / rate) for samples in plan.generated_samples)
    return {"input_tokens": text_tokens, "output_tokens": frames, "total_tokens": text_tokens + frames}
