"""The HTTP contract through Flask's test client: the seed's /synthesize, audio, meta routes, errors."""

import io
import json
from pathlib import Path

import pytest
import soundfile as sf
from flask import Flask
from flask.testing import FlaskClient

from barkserve.server import create_app
from support import server_config

SHORT = {"max_duration_sec": 0.4}
UNCACHED = "barkserve-tests/no-such-bark"  # allowlisted, but no cache holds it


@pytest.fixture(scope="module")
def app(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    root = tmp_path_factory.mktemp("server")
    config = server_config(tiny_model_dir, root, models=("small", UNCACHED), max_text_chars=600, max_body_bytes=4096)
    return create_app(config, start_jobs=False)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_synthesize_keeps_the_seed_contract(client: FlaskClient, app: Flask) -> None:
    text = "Hello, my dog is cute [laughs]"
    response = client.post("/synthesize", json={"text": text, "voice_preset": 3, **SHORT})
    assert response.status_code == 200
    body = response.get_json()
    for key in ("message", "filename", "text", "processing_time_sec", "processing_time_min"):
        assert key in body
    assert body["text"] == text
    assert isinstance(body["processing_time_sec"], float) and isinstance(body["processing_time_min"], float)
    assert body["voice_preset"] == "v2/en_speaker_3" and body["sample_rate"] == 24_000
    assert body["url"] == f"/audio/{body['filename']}" and body["filename"].endswith(".wav")
    path = app.extensions["barkserve"].config.output_dir / body["filename"]
    info = sf.info(str(path))
    assert info.samplerate == 24_000 and info.channels == 1
    assert info.frames / info.samplerate == pytest.approx(body["duration_sec"], abs=1e-3)
    served = client.get(body["url"])
    assert served.status_code == 200 and served.mimetype == "audio/wav"
    assert served.data == path.read_bytes()


def test_text_is_returned_unchanged_and_seed_reproduces(client: FlaskClient, app: Flask) -> None:
    text = "  Two   spaces,\ta tab and a newline\n"
    first = client.post("/synthesize", json={"text": text, **SHORT}).get_json()
    again = client.post("/synthesize", json={"text": text, "seed": first["seed"], **SHORT}).get_json()
    assert first["text"] == text and first["voice_preset"] == "v2/en_speaker_6"
    out = app.extensions["barkserve"].config.output_dir
    assert first["filename"] != again["filename"]
    assert (out / first["filename"]).read_bytes()[44:] == (out / again["filename"]).read_bytes()[44:]


BAD_REQUESTS = [
    ("no json content type", {"data": "text=hi"}, "invalid_request", "Content-Type"),
    ("text/plain", {"data": '{"text": "hi"}', "content_type": "text/plain"}, "invalid_request", "JSON"),
    ("malformed json", {"data": '{"text": ', "content_type": "application/json"}, "invalid_request", "not valid"),
    ("json array", {"json": ["hi"]}, "invalid_request", "object"),
    (
        "json nested deep",
        {"data": "[" * 2000 + "]" * 2000, "content_type": "application/json"},
        "invalid_request",
        "nested",
    ),
    (
        "json not utf-8",
        {"data": b'{"text": "\xff"}', "content_type": "application/json"},
        "invalid_request",
        "not valid JSON",
    ),
    ("json string", {"json": "hi"}, "invalid_request", "object"),
    ("missing text", {"json": {"voice_preset": 1}}, "invalid_request", "'text' is required"),
    ("empty text", {"json": {"text": ""}}, "invalid_request", "empty"),
    ("blank text", {"json": {"text": "  \n "}}, "invalid_request", "empty"),
    ("invisible text", {"json": {"text": "\u200b\u200e\ufeff\x00\u2028"}}, "invalid_request", "empty after"),
    ("lone surrogate", {"json": {"text": "hi \ud800"}}, "invalid_request", "surrogate"),
    ("numeric text", {"json": {"text": 42}}, "invalid_request", "string"),
    ("null text", {"json": {"text": None}}, "invalid_request", "string"),
    ("text over char limit", {"json": {"text": "a" * 601}}, "text_too_long", "600"),
    ("format unknown", {"json": {"text": "hi", "format": "ogg"}}, "invalid_request", "mp3"),
    ("format number", {"json": {"text": "hi", "format": 3}}, "invalid_request", "format must be one of"),
    ("speed too fast", {"json": {"text": "hi", "speed": 5}}, "invalid_request", "speed"),
    ("carry not bool", {"json": {"text": "hi", "carry_history": "yes"}}, "invalid_request", "carry_history"),
    ("pause negative", {"json": {"text": "hi", "sentence_pause_sec": -1}}, "invalid_request", "sentence_pause"),
    ("voice true", {"json": {"text": "hi", "voice_preset": True}}, "invalid_voice", "0-9"),
    ("voice float", {"json": {"text": "hi", "voice_preset": 1.5}}, "invalid_voice", "0-9"),
    ("voice negative", {"json": {"text": "hi", "voice_preset": -1}}, "invalid_voice", "0-9"),
    ("voice ten", {"json": {"text": "hi", "voice_preset": 10}}, "invalid_voice", "0-9"),
    ("voice unknown", {"json": {"text": "hi", "voice_preset": "xx_speaker_1"}}, "invalid_voice", "GET /voices"),
    ("voice traversal", {"json": {"text": "hi", "voice_preset": "../../etc/passwd"}}, "invalid_voice", "0-9"),
    ("voice list", {"json": {"text": "hi", "voice_preset": [1]}}, "invalid_voice", "0-9"),
    ("model not allowed", {"json": {"text": "hi", "model": "suno/bark"}}, "invalid_model", "suno/bark-small"),
    ("model repo injection", {"json": {"text": "hi", "model": "evil/repo"}}, "invalid_model", "must be one of"),
    ("model number", {"json": {"text": "hi", "model": 7}}, "invalid_model", "must be one of"),
    ("unknown field", {"json": {"text": "hi", "volume": 2}}, "invalid_request", "unknown field"),
    ("seed string", {"json": {"text": "hi", "seed": "7"}}, "invalid_request", "seed"),
    ("seed negative", {"json": {"text": "hi", "seed": -3}}, "invalid_request", "seed"),
    ("temperature negative", {"json": {"text": "hi", "text_temp": -1}}, "invalid_request", "text_temp"),
    ("duration zero", {"json": {"text": "hi", "max_duration_sec": 0}}, "invalid_request", "max_duration_sec"),
    ("duration huge", {"json": {"text": "hi", "max_duration_sec": 99}}, "invalid_request", "max_duration_sec"),
    ("min_eos_p over 1", {"json": {"text": "hi", "min_eos_p": 3}}, "invalid_request", "min_eos_p"),
]


@pytest.mark.parametrize(("case", "kwargs", "code", "needle"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_a_clear_400(client: FlaskClient, case: str, kwargs: dict, code: str, needle: str) -> None:
    response = client.post("/synthesize", **kwargs)
    assert response.status_code == 400, response.data
    error = response.get_json()["error"]
    assert error["code"] == code and needle in error["message"]


def test_nothing_is_written_for_a_bad_request(client: FlaskClient, app: Flask) -> None:
    out = app.extensions["barkserve"].config.output_dir
    before = set(out.iterdir()) if out.exists() else set()
    client.post("/synthesize", json={"text": "hi", "voice_preset": 99})
    after = set(out.iterdir()) if out.exists() else set()
    assert before == after


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post("/synthesize", data=json.dumps({"text": "a" * 5000}), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"


def test_allowed_but_unreachable_model_is_503(client: FlaskClient) -> None:
    response = client.post("/synthesize", json={"text": "hi", "model": UNCACHED})
    assert response.status_code == 503
    assert "make-tiny" in response.get_json()["error"]["message"]
    health = client.get("/health").get_json()
    assert health["models"][UNCACHED]["state"] == "unavailable"


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/nothing-here", 404),
        ("get", "/synthesize", 405),
        ("delete", "/health", 405),
        ("get", "/audio/missing.wav", 404),
        ("get", "/audio/..%2f..%2fpyproject.toml", 404),
        ("get", "/audio/../../pyproject.toml", 404),
        ("get", "/audio/%2e%2e/secret.wav", 404),
        ("get", "/audio/.hidden", 404),
    ],
)
def test_errors_are_json(client: FlaskClient, method: str, url: str, status: int) -> None:
    response = getattr(client, method)(url)
    assert response.status_code == status
    assert {"code", "message"} <= set(response.get_json()["error"])


def test_audio_route_serves_only_the_output_folder(client: FlaskClient, app: Flask) -> None:
    out = app.extensions["barkserve"].config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    secret = out.parent / "secret.wav"
    sf.write(secret, [0.0] * 100, 24_000)
    assert client.get("/audio/../secret.wav").status_code == 404
    assert client.get("/audio/..%2fsecret.wav").status_code == 404
    (out / "partial.wav.part").write_bytes(b"x")
    assert client.get("/audio/partial.wav.part").status_code == 404


def test_health_voices_models(client: FlaskClient, tiny_model_dir: Path) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["default_model"] == tiny_model_dir.name
    voices = client.get("/voices").get_json()
    assert voices["default"] == "v2/en_speaker_6" and len(voices["presets"]) == 131
    assert voices["numbers"]["3"] == "v2/en_speaker_3"
    models = client.get("/models").get_json()
    assert [m["id"] for m in models["models"]] == [tiny_model_dir.name, "suno/bark-small", UNCACHED]
    assert models["models"][1]["aliases"] == ["bark-small", "small"]
    assert client.get("/voices?model=large").status_code == 400


def test_wav_is_pcm16(client: FlaskClient) -> None:
    body = client.post("/synthesize", json={"text": "pcm", **SHORT}).get_json()
    data = client.get(body["url"]).data
    info = sf.info(io.BytesIO(data))
    assert info.subtype == "PCM_16" and info.format == "WAV"


def test_no_speech_at_all_is_a_clear_422_and_nothing_is_written(client: FlaskClient, app: Flask) -> None:
    # A floor this low stops the semantic stage at its first token: Bark makes no sound at all.
    output = app.extensions["barkserve"].config.output_dir
    before = set(output.iterdir()) if output.exists() else set()
    for fmt in ("wav", "mp3", "flac"):
        response = client.post("/synthesize", json={"text": "Stop.", "min_eos_p": 1e-9, "format": fmt, **SHORT})
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "no_speech" and "seed" in error["message"]
    assert (set(output.iterdir()) if output.exists() else set()) == before
