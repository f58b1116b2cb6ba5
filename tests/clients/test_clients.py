"""Each client of docs/clients.md, as it calls a real `barkserve serve` with keys required.

Every request below is built the way that client's public source builds it (the file is named above
each test), sent with the same HTTP library where it is Python, and checked for what that client
needs back: audio of the format it asked for, or an error body it can show.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from serverproc import create_key, running_server

pytestmark = pytest.mark.slow  # a real server process
HANG_GUARD_SEC = 300  # stops a hung request; not a speed assertion
# Clients send no Bark options, so the server's own default keeps the tiny model's random speech short.
SERVER_FLAGS = ("--max-duration-sec", "0.3")


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, voices_fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, key) of one server for the module; an ebook2audiobook voice is in its voices folder."""
    root = tmp_path_factory.mktemp("clients")
    write_coqui_bark_voice(voices_fixture_dir / "v2" / "en_speaker_3.npz", root / "voices" / "narrator.npz")
    key = create_key(root, "clients", "speak")
    with running_server(tiny_model_dir, root, *SERVER_FLAGS) as base:
        yield base, key


def is_mp3(data: bytes) -> bool:
    """An ID3 tag or an MPEG audio frame header (11 sync bits) at the start."""
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


# --- Open WebUI: backend/open_webui/routers/audio.py (open-webui/open-webui), the "openai" TTS engine.
# The browser posts {"input", "voice"}; the backend sets payload["model"] = TTS_MODEL, merges
# TTS_OPENAI_PARAMS, and posts it to f"{TTS_OPENAI_API_BASE_URL}/audio/speech" with aiohttp (json=),
# "Authorization: Bearer {TTS_OPENAI_API_KEY}" and, with ENABLE_FORWARD_USER_INFO_HEADERS, X-OpenWebUI-User-*.
# It saves the answer as .mp3. For a non-OpenAI base URL it lists {base}/audio/models and {base}/audio/voices
# without a key and falls back to tts-1 and the six OpenAI voices when either fails.
def test_open_webui(server: tuple[str, str]) -> None:
    base, key = server
    payload = {"input": "Hello from Open WebUI.", "voice": "alloy"}
    payload["model"] = "tts-1"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "X-OpenWebUI-User-Name": "Ada",
        "X-OpenWebUI-User-Id": "7",
        "X-OpenWebUI-User-Email": "ada@example.org",
        "X-OpenWebUI-User-Role": "user",
    }
    answer = requests.post(f"{base}/v1/audio/speech", json=payload, headers=headers, timeout=HANG_GUARD_SEC)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("audio/mpeg")
    assert is_mp3(answer.content) and len(answer.content) > 500
    # A Bark preset as the voice (typed into Open WebUI's voice box) works too.
    preset = requests.post(f"{base}/v1/audio/speech", json={**payload, "voice": "v2/de_speaker_3"}, headers=headers,
                           timeout=HANG_GUARD_SEC)  # fmt: skip
    assert preset.status_code == 200 and is_mp3(preset.content)
    # Its keyless discovery calls get a JSON error, so it falls back to its built-in lists (documented).
    assert requests.get(f"{base}/v1/audio/voices", timeout=HANG_GUARD_SEC).status_code == 401
    assert requests.get(f"{base}/v1/audio/models", timeout=HANG_GUARD_SEC).status_code in (401, 404)
    # What its voice list shows once keys are off or a key is sent: ids and names of voices it can post.
    listed = requests.get(f"{base}/v1/audio/voices", headers=headers, timeout=HANG_GUARD_SEC).json()["voices"]
    ids = {voice["id"] for voice in listed}
    assert {"alloy", "echo", "fable", "onyx", "nova", "shimmer", "v2/de_speaker_3", "narrator"} <= ids
    assert all(voice["name"] for voice in listed)


def urllib_post(url: str, payload: dict[str, object], key: str) -> tuple[int, bytes]:
    """Home Assistant's openai_tts engine: urllib.request, json.dumps(payload), its User-Agent."""
    headers = {"Content-Type": "application/json", "User-Agent": "HomeAssistant-OpenAI-TTS"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD_SEC) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- Home Assistant, the OpenAI TTS integration (HACS: sfortis/openai_tts):
# custom_components/openai_tts/config_flow.py validates the URL and key with {"model": "tts-1", "input": ".",
# "voice": "alloy", "response_format": "mp3"}; custom_components/openai_tts/openaitts_engine.py posts
# {"model", "input", "voice", "response_format": "mp3", "speed"} (+ "instructions" when set, + the
# "extra_payload" JSON merged in) to the configured full URL; its streaming path asks for "opus".
def test_home_assistant(server: tuple[str, str]) -> None:
    base, key = server
    url = f"{base}/v1/audio/speech"
    status, audio = urllib_post(url, {"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"}, key)
    assert status == 200 and is_mp3(audio)
    status, _ = urllib_post(url, {"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"}, "")
    assert status == 401  # the setup form reports a wrong key as such
    speech = {"model": "tts-1", "input": "The front door is open.", "voice": "nova", "response_format": "mp3",
              "speed": 1.0}  # fmt: skip
    status, audio = urllib_post(url, speech, key)
    assert status == 200 and is_mp3(audio) and len(audio) > 500
    status, audio = urllib_post(url, {**speech, "response_format": "opus", "speed": 1.25}, key)
    assert status == 200 and audio[:4] == b"OggS"
    # Bark's options through the integration's "extra payload" field.
    status, audio = urllib_post(url, {**speech, **{"text_temp": 0.6, "seed": 3}}, key)
    assert status == 200 and is_mp3(audio)
    # "instructions" (a gpt-4o-mini-tts field) is refused by name: the recipe says to leave it empty.
    status, body = urllib_post(url, {**speech, "instructions": "Speak calmly."}, key)
    assert status == 400 and "instructions" in json.loads(body)["error"]["message"]


# --- SillyTavern, the "OpenAI Compatible" TTS provider: public/scripts/extensions/tts/openai-compatible.js
# sends its settings to SillyTavern's server, whose src/endpoints/openai.js (POST /api/openai/custom/
# generate-voice) fetches provider_endpoint with JSON {input, response_format: "mp3", voice, speed, model},
# "Content-Type: application/json" and "Authorization: Bearer <key or empty>".
def test_sillytavern(server: tuple[str, str]) -> None:
    base, key = server

    def generate_voice(voice: str, secret: str | None) -> requests.Response:
        text = "Greetings, traveller."
        body = {"input": text, "response_format": "mp3", "voice": voice, "speed": 1, "model": "tts-1"}
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret or ''}"}
        url = f"{base}/v1/audio/speech"
        return requests.post(url, data=json.dumps(body), headers=headers, timeout=HANG_GUARD_SEC)

    for voice in ("alloy", "v2/en_speaker_9", "narrator"):  # its voice list is free text, comma-separated
        answer = generate_voice(voice, key)
        assert answer.status_code == 200 and is_mp3(answer.content), (voice, answer.text[:200])
    refused = generate_voice("alloy", None)  # no key saved: "Bearer " with nothing after it
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    unknown = generate_voice("Seraphina", key)  # a character name typed as a voice: SillyTavern shows the text
    assert unknown.status_code == 400 and "Seraphina" in unknown.json()["error"]["message"]


def write_coqui_bark_voice(source: Path, target: Path) -> None:
    """A voice file as ebook2audiobook's Bark engine (Coqui TTS's Bark) writes it: np.savez of the three prompts.

    lib/classes/tts_engines/bark.py (DrewThomasson/ebook2audiobook) builds {"semantic_prompt",
    "coarse_prompt": codes[:2, :], "fine_prompt": codes} and Coqui's Bark saves it with np.savez.
    """
    prompt = np.load(source)
    codes = prompt["fine_prompt"]
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, semantic_prompt=prompt["semantic_prompt"], coarse_prompt=codes[:2, :], fine_prompt=codes)


# --- ebook2audiobook runs its engines (Bark among them) in its own process and calls no TTS server; what
# carries over is its Bark voices (.npz). One dropped into the voices folder is used by name.
def test_ebook2audiobook_bark_voice(server: tuple[str, str]) -> None:
    base, key = server
    headers = {"Authorization": f"Bearer {key}"}
    made = requests.post(f"{base}/synthesize", json={"text": "Chapter one.", "voice_preset": "narrator"},
                         headers=headers, timeout=HANG_GUARD_SEC)  # fmt: skip
    assert made.status_code == 200, made.text[:300]
    speech = {"model": "tts-1", "input": "Chapter one.", "voice": "narrator", "response_format": "wav"}
    answer = requests.post(f"{base}/v1/audio/speech", json=speech, headers=headers, timeout=HANG_GUARD_SEC)
    assert answer.status_code == 200 and answer.content[:4] == b"RIFF"
