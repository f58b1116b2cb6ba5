"""Underrun of streamed speech: the playback model, and what /metrics and the progress record say of it.

The stream log's clock is injected: a stream whose pieces leave late is late by construction, with no
wall-clock time involved.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_metrics import scrape, value

from barkserve.server.streams import KEEP_STREAMS, StreamLog, playback_of
from support import FakeEngine

LONG = " ".join(f"This is sentence number {i} of a text long enough to need several chunks." for i in range(12))
SPEECH = {"model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}
LATE_STEP_SEC = 100.0  # far longer than any piece FakeEngine makes: every piece after the first is late


def test_audio_that_arrives_faster_than_it_plays_never_underruns() -> None:
    # 1 s pieces, each arriving 0.5 s after the one before: the player is always ahead.
    playback = playback_of([(10.0, 1.0), (10.5, 1.0), (11.0, 1.0), (11.5, 1.0)])
    assert playback.underrun_sec == 0.0 and playback.stalls == 0 and playback.audio_sec == 4.0


def test_audio_that_arrives_slower_than_it_plays_underruns_by_the_wait() -> None:
    # The second piece is due at 1.0 (the first one's end) and arrives at 3.0: a 2 s stall. Playback
    # resumes at 3.0, so the third piece is due at 4.0 and arriving at 3.5 is in time; the fourth is due
    # at 5.0 and arrives at 5.25.
    playback = playback_of([(0.0, 1.0), (3.0, 1.0), (3.5, 1.0), (5.25, 1.0)])
    assert playback.underrun_sec == pytest.approx(2.25) and playback.stalls == 2


def test_empty_arrivals_are_no_audio() -> None:
    # Bytes that carry no audio neither start playback nor stall it.
    playback = playback_of([(0.0, 0.0), (5.0, 1.0), (5.5, 0.0), (9.0, 0.0)])
    assert playback.started == 5.0 and playback.underrun_sec == 0.0


@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.floats(0.01, 3.0)),  # (gap since the previous arrival, seconds)
        min_size=1,
        max_size=20,
    )
)
def test_underrun_is_the_latest_arrival_against_its_first_byte_deadline(steps: list[tuple[float, float]]) -> None:
    # Each stall moves every later deadline by its length, so the total is max(0, max_i (t_i - t_0 - a_i)).
    times = list(itertools.accumulate(gap for gap, _ in steps))
    before = [0.0, *itertools.accumulate(sec for _, sec in steps)][:-1]
    playback = playback_of(zip(times, (sec for _, sec in steps), strict=True))
    expected = max(0.0, *(t - times[0] - a for t, a in zip(times, before, strict=True)))
    assert playback.underrun_sec == pytest.approx(expected, abs=1e-9)


def app_with_clock(make_app: Any, clock: Any) -> Any:
    app = make_app(engine_factory=FakeEngine)
    app.extensions["barkserve"].streams = StreamLog(clock=clock)
    return app


def underrun_metrics(client: Any) -> dict[str, float]:
    samples = scrape(client)
    return {
        "total": value(samples, "barkserve_stream_underrun_seconds_total"),
        "count": value(samples, "barkserve_stream_underrun_per_stream_seconds_count"),
        "zero": value(samples, "barkserve_stream_underrun_per_stream_seconds_bucket", le="0.0"),
        "streams": value(samples, "barkserve_streams_total"),
        "continuous": value(samples, "barkserve_streams_continuous_total"),
    }


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def test_a_stream_sent_on_time_has_no_underrun(make_app: Any) -> None:
    client = app_with_clock(make_app, clock=lambda: 7.0).test_client()  # every piece leaves at once
    before = underrun_metrics(client)
    response = client.post("/v1/audio/speech", json=SPEECH)
    assert response.status_code == 200 and response.data  # the whole stream, read
    record = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}").get_json()
    assert record["chunks_done"] > 1 and record["underrun_sec"] == 0.0 and record["stalls"] == 0
    assert moved(before, underrun_metrics(client)) == {"total": 0, "count": 1, "zero": 1, "streams": 1,
                                                       "continuous": 1}  # fmt: skip


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_a_stream_sent_late_shows_its_underrun_in_metrics(make_app: Any, stream_format: str) -> None:
    ticks = itertools.count(0.0, LATE_STEP_SEC)
    client = app_with_clock(make_app, clock=lambda: next(ticks)).test_client()
    before = underrun_metrics(client)
    response = client.post("/v1/audio/speech", json={**SPEECH, "stream_format": stream_format})
    assert response.status_code == 200 and response.data
    record = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}").get_json()
    pieces = record["chunks_done"]
    assert pieces > 1 and record["stalls"] == pieces - 1  # every piece after the first was late
    # The last piece left at (pieces - 1) x 100 s and was due once the audio before it had played: the
    # underrun is (pieces - 1) x 100 s less that audio, which is more than 0 and less than all of it.
    latest = (pieces - 1) * LATE_STEP_SEC
    assert latest - record["audio_sec"] <= record["underrun_sec"] < latest
    after = underrun_metrics(client)
    assert after["total"] - before["total"] == pytest.approx(record["underrun_sec"])
    assert moved(before, after) | {"total": 0} == {"total": 0, "count": 1, "zero": 0, "streams": 1, "continuous": 0}


def test_a_stream_the_client_left_counts_but_is_not_continuous(make_app: Any) -> None:
    client = app_with_clock(make_app, clock=lambda: 7.0).test_client()
    before = underrun_metrics(client)
    response = client.post("/v1/audio/speech", json=SPEECH, buffered=False)
    assert next(iter(response.response))  # the first chunk's audio
    response.close()  # what the WSGI server does when the client disconnects
    assert moved(before, underrun_metrics(client)) == {"total": 0, "count": 1, "zero": 1, "streams": 1,
                                                       "continuous": 0}  # fmt: skip


def test_the_log_forgets_ended_streams_first_and_never_a_running_one() -> None:
    # A long stream outlives many short ones: its record, and so its underrun, is still there when it ends.
    log = StreamLog(clock=lambda: 0.0)
    running = log.start(total=3)
    log.sent(running, 1.0)
    ended = []
    for _ in range(KEEP_STREAMS + 5):
        ended.append(log.start(total=1))
        log.finish(ended[-1])
    record = log.get(running)
    assert record is not None and record["chunks_done"] == 1 and record["audio_sec"] == 1.0
    assert log.get(ended[0]) is None and log.get(ended[-1]) is not None  # the oldest ended ones went
    assert sum(log.get(sid) is not None for sid in [running, *ended]) == KEEP_STREAMS
