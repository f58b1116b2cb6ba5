"""The OpenAI-compatible endpoint, driven by the official `openai` client against a real server."""

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import openai
import pytest
import requests
import soundfile as sf

from serverproc import running_server

TEXT = "Hello there. [laughs] This is a test of the speech endpoint. It has several sentences! Does it stream? " * 3


LONG = " ".join(f"This is sentence number {i}, spoken on its own." for i in range(40))


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("openai")
    # Short chunks keep the random tiny model quick; input limit small to test it.
    extra = ["--max-duration-sec", "0.3"]
    with running_server(tiny_model_dir, root, *extra) as url:
        yield url, root


@pytest.fixture(scope="module")
def base(server: tuple[str, Path]) -> str:
    return server[0]


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


# Samples a decoder adds to a stream of n: (least, most). Streamed mp3 has no LAME gapless header (it
# needs the final length), so decoders play LAME's 576 + the decoder's 529 delay samples and pad to a
# whole 576-sample frame. ADTS cannot say how many samples the encoder added: decoders play its 1024
# priming samples and the padding of the last 1024-sample frame. Opus: one 20 ms frame at most.
ADDED = {"mp3": (1105, 1105 + 575), "aac": (1024, 2047), "opus": (0, 480)}
ROUNDING = 24  # audio_sec is rounded to the millisecond: 24 samples either way at 24 kHz


def stream(client: openai.OpenAI, fmt: str, text: str = TEXT, **extra: object) -> tuple[bytes, str, str]:
    """The streamed bytes of one request through the official client, its request id and seed."""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt, extra_body=extra or None
    ) as response:
        return response.read(), response.headers["x-request-id"], response.headers["x-seed"]


def added_samples(seconds: float, progress: dict) -> float:
    return (seconds - progress["audio_sec"]) * 24_000


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_response_format(client: openai.OpenAI, base: str, fmt: str) -> None:
    data, request_id, _ = stream(client, fmt)
    progress = requests.get(f"{base}/v1/audio/speech/{request_id}", timeout=10).json()
    seconds, rate = decoded_seconds(data, fmt)
    assert rate == (48_000 if fmt == "opus" else 24_000)
    assert progress["chunks_done"] == progress["chunks_total"] >= 2
    least, most = ADDED.get(fmt, (0, 0))
    assert least - ROUNDING <= added_samples(seconds, progress) <= most + ROUNDING
    if fmt in ("wav", "flac", "mp3", "opus"):  # libsndfile reads these; a streamed flac said "0 samples"
        audio, sf_rate = sf.read(io.BytesIO(data))
        assert sf_rate == 24_000  # libsndfile decodes Opus at the rate it was made from
        assert least - ROUNDING <= added_samples(len(audio) / sf_rate, progress) <= most + ROUNDING


def test_a_streamed_wav_and_flac_save_as_files_soundfile_reads(client: openai.OpenAI, tmp_path: Path) -> None:
    for fmt in ("wav", "flac"):
        path = tmp_path / f"speech.{fmt}"
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Short. Then another one.", response_format=fmt
        ) as response:
            response.stream_to_file(path)
        info = sf.info(str(path))
        assert info.samplerate == 24_000 and 0 < info.frames < 24_000 * 60
        assert len(sf.read(str(path))[0]) == info.frames


def sse_events(client: openai.OpenAI, fmt: str, **extra: object) -> list[dict]:
    """The events of a `stream_format: "sse"` request through the official client."""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt, stream_format="sse", extra_body=extra
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [json.loads(line[len("data: ") :]) for line in lines]


@pytest.mark.parametrize("fmt", ["pcm", "mp3", "opus", "flac", "wav", "aac"])
def test_sse_events_carry_the_audio_stream(client: openai.OpenAI, fmt: str) -> None:
    events = sse_events(client, fmt, seed=42)
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == stream(client, fmt, seed=42)[0]


def test_stream_formats_other_than_audio_and_sse_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", extra_body={"stream_format": "json"})
    assert "stream_format must be one of ['audio', 'sse']" in info.value.message


def test_the_seed_repeats_the_bytes(client: openai.OpenAI) -> None:
    options = {"text_temp": 0.8, "waveform_temp": 0.6, "sentence_pause_sec": 0.1, "max_duration_sec": 0.3}
    first, _, seed = stream(client, "mp3", seed=1234, **options)
    again, _, _ = stream(client, "mp3", seed=1234, **options)
    other, _, _ = stream(client, "mp3", seed=1235, **options)
    assert seed == "1234" and first == again and first != other
    drawn = stream(client, "pcm", "Hi.")[2]  # no seed: one is drawn and reported
    assert stream(client, "pcm", "Hi.", seed=int(drawn))[0] == stream(client, "pcm", "Hi.", seed=int(drawn))[0]


@pytest.mark.parametrize(
    "options",
    [{"seed": -1}, {"seed": "7"}, {"text_temp": 9}, {"waveform_temp": -1}, {"min_eos_p": 2},
     {"max_duration_sec": 0}, {"sentence_pause_sec": 6}, {"carry_history": 1}, {"qc": "strict"}],
)  # fmt: skip
def test_bad_bark_options_are_the_400_of_synthesize(client: openai.OpenAI, base: str, options: dict) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", extra_body=options)
    synthesize = requests.post(f"{base}/synthesize", json={"text": "Hi.", **options}, timeout=60)
    assert synthesize.status_code == info.value.status_code == 400
    assert info.value.body == synthesize.json()["error"]


def test_quality_control_fails_as_on_synthesize(client: openai.OpenAI, base: str) -> None:
    # This server cannot load its scorer models (offline): the first chunk's check fails before any byte
    # is sent, so the answer is an HTTP error, the same as /synthesize's.
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", extra_body={"qc": True})
    synthesize = requests.post(f"{base}/synthesize", json={"text": "Hi.", "qc": True}, timeout=60)
    assert info.value.status_code == synthesize.status_code == 503
    assert info.value.body == synthesize.json()["error"]


def test_voices_are_listed_and_usable(client: openai.OpenAI, base: str) -> None:
    voices = requests.get(f"{base}/v1/audio/voices", timeout=10).json()["voices"]
    by_id = {v["id"]: v for v in voices}
    alloy = {"id": "alloy", "name": "alloy", "preset": "v2/en_speaker_6", "kind": "openai", "language": "en"}
    assert by_id["alloy"] == alloy
    assert {v["kind"] for v in voices} >= {"openai", "preset"}
    for voice in ("shimmer", next(v["id"] for v in voices if v["kind"] == "preset")):
        assert client.audio.speech.create(model="tts-1", voice=voice, input="Hi.", response_format="pcm").content


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


def test_first_bytes_arrive_before_the_last_chunk_starts(client: openai.OpenAI, base: str) -> None:
    at_first = None
    received = b""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input=LONG, response_format="pcm"
    ) as response:
        rid = response.headers["x-request-id"]
        for piece in response.iter_bytes():
            if piece and at_first is None:
                at_first = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
            received += piece
    final = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
    assert final["chunks_total"] >= 4 and final["chunks_done"] == final["chunks_started"] == final["chunks_total"]
    # Order of events: when the client held audio, the last chunk had not even been sent to the engine.
    assert at_first is not None and at_first["chunks_started"] < at_first["chunks_total"]
    assert at_first["chunks_done"] < at_first["chunks_total"] and at_first["finished_at"] is None
    assert len(received) / 2 / 24_000 == pytest.approx(final["audio_sec"], abs=1e-3)


def finished_record(base: str, rid: str) -> dict:
    """The progress record once it has ended (polled: the server learns of a disconnect at its next write)."""
    deadline = time.monotonic() + 120  # a guard against a hang, not a speed assertion
    while time.monotonic() < deadline:
        record = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
        if record["finished_at"] is not None:
            return record
        time.sleep(0.1)
    pytest.fail(f"stream {rid} never ended")


def test_a_client_leaving_cancels_the_rest(client: openai.OpenAI, server: tuple[str, Path]) -> None:
    base, root = server
    other: dict = {}

    def full_stream() -> None:
        other["data"], other["id"], _ = stream(client, "pcm", LONG, seed=9)

    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=LONG, response_format="pcm"
    ) as response:
        rid = response.headers["x-request-id"]
        thread = threading.Thread(target=full_stream)
        thread.start()
        assert next(response.iter_bytes())
    # Leaving the block closed the connection with most of the text unspoken.
    record = finished_record(base, rid)
    assert record["error"] == "client disconnected"
    left = record["chunks_total"] - record["chunks_done"]
    # Chunks not started were never sent; at most the lookahead (2) may have finished in the engine.
    assert record["chunks_cancelled"] >= left - 2 > 0 and record["chunks_started"] < record["chunks_total"]
    assert f"stream {rid}: client disconnected" in (root / "server.log").read_text()
    thread.join(300)
    kept = requests.get(f"{base}/v1/audio/speech/{other['id']}", timeout=10).json()
    assert kept["error"] is None and kept["chunks_done"] == kept["chunks_total"]
    assert len(other["data"]) / 2 / 24_000 == pytest.approx(kept["audio_sec"], abs=1e-3)


def test_models_list(client: openai.OpenAI, tiny_model_dir: Path) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "tts-1" and tiny_model_dir.name in ids and "tts-1-hd" not in ids


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
