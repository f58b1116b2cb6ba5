"""Timestamps that stream and batches, through the official `openai` client against a real server.

The server aligns words with a tiny random CTC checkpoint (the hub's cannot be fetched here): its word
times are not those of real speech, but they come from the aligner the same way, and the streamed
ones must be what the finished captions file says.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import requests
import soundfile as sf

from barkserve.testing.tiny import make_tiny_ctc
from serverproc import running_server

TEXT = "Hello there, friend. We go on now. Then we stop here. One more line. And the last one."
LONG = " ".join(f"This is sentence number {i}, spoken on its own." for i in range(40))


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("speech-api")
    ctc = make_tiny_ctc(root / "ctc")
    # Chunks of up to 2 s: enough audio frames for the aligner to place each chunk's letters.
    with running_server(tiny_model_dir, root, "--max-duration-sec", "2", "--align-model", str(ctc)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)


def sse(client: openai.OpenAI, base: str, text: str, **extra: Any) -> tuple[list[dict[str, Any]], Any, str]:
    """The events of a timestamped SSE request read incrementally through the official client; the
    stream's progress record when the first timestamps arrived; the captions URL (if any)."""
    received: list[dict[str, Any]] = []
    first_seen = None
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm", stream_format="sse",
        extra_body={"timestamps": True, "seed": 5, **extra},
    ) as response:  # fmt: skip
        rid = response.headers["x-request-id"]
        for line in response.iter_lines():  # read as the server sends it
            if not line:
                continue
            event = json.loads(line.removeprefix("data: "))
            if first_seen is None and event["type"] == "speech.audio.timestamps":
                first_seen = requests.get(f"{base}/v1/audio/speech/{rid}", timeout=10).json()
            received.append(event)
        return received, first_seen, response.headers.get("x-captions-url", "")


def test_the_first_chunks_timestamps_arrive_before_later_chunks_are_made(client: openai.OpenAI, base: str) -> None:
    received, first_seen, _ = sse(client, base, LONG)
    # In hand while the last chunks were not even sent to the engine (2 ahead of the one delivered).
    assert first_seen is not None and first_seen["finished_at"] is None
    assert first_seen["chunks_started"] < first_seen["chunks_total"]
    first = next(e for e in received if e["type"] == "speech.audio.timestamps")
    # The first chunk is the first sentence's first clause: its caption is that part of the sentence.
    assert first["chunk"] == 0 and first["sentences"][0]["text"] == "This is sentence number 0,"
    assert received.index(first) == 0  # before any audio
    sentences = [s for e in received if e["type"] == "speech.audio.timestamps" for s in e["sentences"]]
    assert " ".join(s["text"] for s in sentences) == LONG
    starts = [s["start"] for s in sentences]
    assert starts == sorted(starts) and all(s["end"] == t["start"] for s, t in pairwise(sentences))


def test_sse_timestamps_come_before_their_audio_and_match_the_captions_file(client: openai.OpenAI, base: str) -> None:
    received, _, captions_url = sse(client, base, TEXT, captions="json", caption_words=True)
    done = received[-1]
    assert done["type"] == "speech.audio.done" and done["timestamps"]["warnings"] == []
    finished = requests.get(f"{base}{captions_url}", timeout=10).json()["cues"]
    all_words = [w for c in finished for w in c["words"]]
    assert len(all_words) == len(TEXT.split())
    words: list[dict[str, Any]] = []
    sentences: list[dict[str, Any]] = []
    samples = 0
    for event in received[:-1]:
        if event["type"] == "speech.audio.timestamps":
            words += event["words"]
            sentences += event["sentences"]
        else:
            assert event["type"] == "speech.audio.delta"
            samples += len(base64.b64decode(event["audio"])) // 2
            # No audio before its words: every word starting in the audio received so far is known.
            assert len(words) >= sum(w["start"] < samples / 24_000 - 1e-3 for w in all_words)  # times are in ms
    assert words == all_words
    assert sentences == [{"text": c["text"], "start": c["start"], "end": c["end"]} for c in finished]
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times) and [s["start"] for s in sentences] == sorted(s["start"] for s in sentences)
    assert sentences[-1]["end"] == pytest.approx(samples / 24_000, abs=1e-3)


def test_timestamps_without_streaming_are_one_json_answer(client: openai.OpenAI) -> None:
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav", extra_body={"timestamps": True, "seed": 5}
    )
    answer = json.loads(response.content)
    audio, rate = sf.read(io.BytesIO(base64.b64decode(answer["audio"])))
    assert answer["sentences"][-1]["end"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert [w["text"] for w in answer["words"]] == TEXT.split()


def test_a_batch_through_the_official_client(client: openai.OpenAI) -> None:
    items = [
        {"model": "tts-1", "voice": "alloy", "input": "Hello there.", "response_format": "wav", "seed": 1},
        {"model": "tts-1", "voice": "v2/fr_speaker_2", "input": "Bonjour.", "response_format": "pcm"},
        {"model": "tts-1", "voice": "nova", "input": "Timed words.", "response_format": "mp3", "timestamps": True},
    ]
    answer = client.post("/audio/speech/batch", body={"items": items}, cast_to=object)
    assert isinstance(answer, dict) and answer["failed"] == 0
    wav, rate = sf.read(io.BytesIO(base64.b64decode(answer["data"][0]["audio"])))
    pcm = np.frombuffer(base64.b64decode(answer["data"][1]["audio"]), "<i2")
    assert rate == 24_000 and len(wav) > 0 and len(pcm) > 0
    assert base64.b64decode(answer["data"][2]["audio"])[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
    assert [w["text"] for w in answer["data"][2]["words"]] == ["Timed", "words."]
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/audio/speech/batch", body={"items": [items[0], {**items[1], "voice": "nobody"}]}, cast_to=object)
    assert "items[1]: unknown voice 'nobody'" in info.value.message
