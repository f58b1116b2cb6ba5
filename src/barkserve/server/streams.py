"""Progress of recent streamed requests, kept in memory for `GET /v1/audio/speech/<id>`."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

KEEP_STREAMS = 200


class StreamLog:
    """A bounded, thread-safe record of streamed requests: chunks done, audio seconds, times."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, total: int) -> str:
        sid = uuid.uuid4().hex
        with self._lock:
            self._items[sid] = {"id": sid, "chunks_total": total, "chunks_done": 0, "audio_sec": 0.0,
                                "started_at": time.time(), "finished_at": None, "error": None}  # fmt: skip
            while len(self._items) > KEEP_STREAMS:
                self._items.popitem(last=False)
        return sid

    def update(self, sid: str, **changes: Any) -> None:
        with self._lock:
            if sid in self._items:
                self._items[sid].update(changes)

    def get(self, sid: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(sid)
            return dict(item) if item else None
