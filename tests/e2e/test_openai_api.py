"""The OpenAI-compatible endpoint, driven by the official `openai` client against a real server."""

import io
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import openai
import pytest
import requests

from serverproc import running_server

TEXT = "Hello there. [laughs] This is a test of the speech endpoint. It has several sentences! Does it stream? " * 3


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("openai")
    # Short chunks keep the random tiny model quick; input limit small to test it.
    extra = ["--max-duration-sec", "0.3"]
    with running_server(tiny_model_dir, root, *extra) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)


def decoded_seconds(data: bytes, fmt: str) -> tuple[float, int]:
    if fmt == "pcm":  # 16-bit little-endian mono at 24 kHz, as OpenAI's pcm
        return len(data) / 2 / 24_000, 24_000
    container = av.open(io.BytesIO(data))
    rate = container.streams.audio[0].rate
    samples = sum(frame.samples for frame in container.decode(audio=0))
    return samples / rate, rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_response_format(client: openai.OpenAI, base: str, fmt: str) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt
    ) as response:
        data = response.read()
        request_id = response.headers["x-request-id"]
    progress = requests.get(f"{base}/v1/audio/speech/{request_id}", timeout=10).json()
    seconds, rate = decoded_seconds(data, fmt)
    assert rate == (48_000 if fmt == "opus" else 24_000)
    assert progress["chunks_done"] == progress["chunks_total"] >= 2
    if fmt == "aac":
        # ADTS cannot say how many samples the encoder added: decoders play its 1024 priming samples
        # and the padding of the last 1024-sample frame, so 1024 to 2047 extra samples (audio_sec is
        # rounded to the millisecond: 24 samples either way).
        extra = (seconds - progress["audio_sec"]) * rate
        assert 1024 - 24 <= extra < 2048 + 24
    else:
        assert seconds == pytest.approx(progress["audio_sec"], abs=0.08)


def test_speed_changes_duration(client: openai.OpenAI, base: str) -> None:
    durations = {}
    for speed in (1.0, 2.0):
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="v2/de_speaker_1", input="Ein Satz. Noch ein Satz.", response_format="wav", speed=speed
        ) as response:
            durations[speed] = decoded_seconds(response.read(), "wav")[0]
            rid = response.headers["x-request-id"]
        progress = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
        assert durations[speed] == pytest.approx(progress["audio_sec"], abs=0.01)
    assert 0.4 < durations[2.0] / durations[1.0] < 0.6


def test_first_bytes_arrive_before_generation_finishes(client: openai.OpenAI, base: str) -> None:
    long_input = " ".join(f"This is sentence number {i}, spoken on its own." for i in range(40))
    first_bytes_at = None
    received = b""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input=long_input, response_format="pcm"
    ) as response:
        rid = response.headers["x-request-id"]
        for piece in response.iter_bytes():
            if piece and first_bytes_at is None:
                first_bytes_at = time.time()
                at_first = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
            received += piece
    final = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
    assert final["chunks_total"] >= 4 and final["chunks_done"] == final["chunks_total"]
    # Order of events on one clock: the client held audio before the server generated the last chunk.
    assert first_bytes_at is not None and first_bytes_at < final["finished_at"]
    assert at_first["finished_at"] is None
    assert len(received) / 2 / 24_000 == pytest.approx(final["audio_sec"], abs=1e-3)


def test_models_list(client: openai.OpenAI, tiny_model_dir: Path) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "tts-1" and str(tiny_model_dir) in ids and "tts-1-hd" not in ids


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"voice": "no-such-voice"}, "unknown voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 5.0}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"model": "tts-2"}, "model must be one of"),
        ({"model": "tts-1-hd"}, "--models large"),
        ({"input": ""}, "empty"),
        ({"input": "x" * 5000}, "4096"),
        ({"extra_body": {"instructions": "whisper"}}, "instructions"),
    ],
)
def test_bad_requests_raise_bad_request_error(client: openai.OpenAI, kwargs: dict, needle: str) -> None:
    args = {"model": "tts-1", "voice": "alloy", "input": "Hi.", **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(**args)
    assert needle in info.value.message
    assert info.value.status_code == 400


def test_pcm_is_what_openai_documents(client: openai.OpenAI) -> None:
    # OpenAI's pcm: raw 16-bit signed little-endian mono samples at 24 kHz, no header.
    data = client.audio.speech.create(model="tts-1", voice="nova", input="Short.", response_format="pcm").content
    assert len(data) % 2 == 0 and len(data) > 0
    assert not data.startswith((b"RIFF", b"ID3", b"fLaC", b"OggS"))  # no container header
    samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768
    as_big_endian = np.frombuffer(data, ">i2").astype(np.float32) / 32768
    # Little-endian reading gives audio (small sample-to-sample steps); the byte-swapped one is noise.
    assert np.mean(np.abs(np.diff(samples))) < np.mean(np.abs(np.diff(as_big_endian)))


def test_a_web_page_cannot_drive_the_server(client: openai.OpenAI, base: str) -> None:
    speech = {"model": "tts-1", "voice": "alloy", "input": "Hi."}
    page = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    refused = requests.post(f"{base}/v1/audio/speech", json=speech, headers=page, timeout=60)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_origin"
    rebound = requests.get(f"{base}/health", headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "invalid_host"
    # The official client sends no Origin: it is not a web page, and keeps working.
    assert client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="pcm").content
