"""Streamed speech: progress records for `GET /v1/audio/speech/<id>`, each stream's underrun, OpenAI's events."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from barkserve.bark import CODEC_FRAME_RATE_HZ
from barkserve.synthesizer import SynthesisPlan

KEEP_STREAMS = 200


@dataclass
class Playback:
    """A listener who plays a stream in real time from its first audio and waits whenever the audio runs out.

    Playback starts the moment the first audio arrives, with no buffer, and runs at real speed. Audio
    due to play before it has arrived stalls the player until it arrives; playback then goes on from
    where it stopped. `underrun_sec` is the total time stalled. For arrivals i = 0, 1, ... at times t_i,
    with a_i seconds of audio arrived before arrival i, that is max(0, max_i (t_i - t_0 - a_i)): each
    stall pushes every later deadline back by its length, so only the latest arrival relative to its
    first-byte-based deadline counts. A stream that arrives at least as fast as it plays has 0.
    """

    started: float | None = None  # when the first audio arrived: playback starts
    audio_sec: float = 0.0  # audio arrived so far
    underrun_sec: float = 0.0  # total time the player stalled, waiting for audio
    stalls: int = 0  # how many times it ran out of audio

    def arrive(self, at: float, seconds: float) -> None:
        """`seconds` of audio arrived at time `at` (seconds on a monotonic clock); empty arrivals are no audio."""
        if seconds <= 0:
            return
        if self.started is None:
            self.started = at
        due = self.started + self.audio_sec + self.underrun_sec  # when the player reaches this audio
        if at > due:
            self.underrun_sec += at - due
            self.stalls += 1
        self.audio_sec += seconds


def playback_of(arrivals: Iterable[tuple[float, float]]) -> Playback:
    """The playback of a stream whose audio arrived as (time, seconds of audio) pairs, in order."""
    playback = Playback()
    for at, seconds in arrivals:
        playback.arrive(at, seconds)
    return playback


class StreamLog:
    """A bounded, thread-safe record of streamed requests: chunks done, audio seconds, times, underrun.

    `clock` (monotonic seconds) times each piece as it is sent, for the record's underrun.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._live: dict[str, Callable[[], dict[str, Any]]] = {}
        self._playback: dict[str, Playback] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def start(self, total: int, live: Callable[[], dict[str, Any]] | None = None) -> str:
        """A new record of `total` chunks; `live()` gives fields read at each `get` until it finishes."""
        sid = uuid.uuid4().hex
        with self._lock:
            self._items[sid] = {"id": sid, "chunks_total": total, "chunks_done": 0, "audio_sec": 0.0,
                                "underrun_sec": 0.0, "stalls": 0,
                                "started_at": time.time(), "finished_at": None, "error": None}  # fmt: skip
            self._playback[sid] = Playback()
            if live is not None:
                self._live[sid] = live
            while len(self._items) > KEEP_STREAMS:
                # The oldest ended record goes; running streams stay (their underrun is counted when they end).
                gone = next((k for k, item in self._items.items() if item["finished_at"] is not None), None)
                if gone is None:  # all of them still running: as many as the server has threads
                    break
                del self._items[gone]
                self._live.pop(gone, None)
                self._playback.pop(gone, None)
        return sid

    def sent(self, sid: str, seconds: float) -> None:
        """A piece of `seconds` of audio leaves now: one more chunk done, timed against real-time playback."""
        now = self.clock()
        with self._lock:
            item, playback = self._items.get(sid), self._playback.get(sid)
            if item is None or playback is None:
                return
            playback.arrive(now, seconds)
            item.update(chunks_done=item["chunks_done"] + 1, audio_sec=round(playback.audio_sec, 3),
                        underrun_sec=round(playback.underrun_sec, 4), stalls=playback.stalls)  # fmt: skip

    def update(self, sid: str, **changes: Any) -> None:
        with self._lock:
            if sid in self._items:
                self._items[sid].update(changes)

    def finish(self, sid: str, **changes: Any) -> None:
        """End a record: its live fields are read a last time and kept, and `finished_at` is set."""
        with self._lock:
            live = self._live.pop(sid, None)
            self._playback.pop(sid, None)
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
