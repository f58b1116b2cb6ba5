"""Host allowlist and Origin checks: a web page the user visits cannot drive a local barkserve."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from barkserve.config import ServerConfig
from barkserve.server.guards import HostPolicy, host_name
from support import FakeEngine

EVIL = "http://evil.example"
JOB = {"text": "Hello there.", "format": "wav"}


@pytest.fixture()
def client(make_app: Any) -> FlaskClient:
    return make_app(engine_factory=FakeEngine).test_client()


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    return str(response.get_json()["error"]["code"])


def clone_form() -> dict[str, Any]:
    return {"file": (io.BytesIO(b"not audio"), "ref.wav"), "name": "my-voice"}


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LocalHost.", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "[::1]"),
        ("tts.example.com:443", "tts.example.com"),
        ("[::1", None),
        ("a:b:c", None),
        ("", None),
        (":80", None),
        ("evil.example@localhost", None),
        ("localhost/x", None),
    ],
)
def test_host_name(host: str, name: str | None) -> None:
    assert host_name(host) == name


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:9", "[::1]:8000", "LOCALHOST"])
def test_local_hosts_are_answered(client: FlaskClient, host: str) -> None:
    assert client.get("/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "localhost.evil.example", "10.0.0.2", "[::1", ""]
)
@pytest.mark.parametrize(("method", "url"), [("GET", "/health"), ("POST", "/synthesize"), ("GET", "/no-such-route")])
def test_other_hosts_get_a_json_400(client: FlaskClient, host: str, method: str, url: str) -> None:
    response = client.open(url, method=method, json=JOB, headers={"Host": host})
    assert error_code(response, 400) == "invalid_host"
    assert "allowed_hosts" in response.get_json()["error"]["message"]


def test_the_configured_host_and_listed_hosts_are_answered(make_app: Any) -> None:
    client = make_app(engine_factory=FakeEngine, host="tts.lan", auth="off").test_client()
    assert client.get("/health", headers={"Host": "tts.lan:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "localhost"}).status_code == 200
    listed = make_app(engine_factory=FakeEngine, allowed_hosts=("tts.example.com", "::1")).test_client()
    assert listed.get("/health", headers={"Host": "tts.example.com"}).status_code == 200
    assert listed.get("/health", headers={"Host": "[::1]:80"}).status_code == 200
    assert error_code(listed.get("/health", headers={"Host": "localhost"}), 400) == "invalid_host"


def test_listening_everywhere_answers_ip_addresses_but_not_names(make_app: Any) -> None:
    client = make_app(engine_factory=FakeEngine, host="0.0.0.0", auth="off").test_client()
    assert client.get("/health", headers={"Host": "192.168.1.20:8000"}).status_code == 200
    assert error_code(client.get("/health", headers={"Host": "evil.example"}), 400) == "invalid_host"
    # An IP address is allowed as Host, not as the origin of another page.
    lan = {"Host": "192.168.1.20:8000", "Origin": "http://192.168.1.66"}
    assert error_code(client.post("/synthesize", json=JOB, headers=lan), 403) == "cross_origin"
    same = {"Host": "192.168.1.20:8000", "Origin": "http://192.168.1.20:8000"}
    assert client.post("/synthesize", json=JOB, headers=same).status_code == 200


@pytest.mark.parametrize("headers", [{"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "http://localhost.evil.example"}, {"Origin": "garbage"}])  # fmt: skip
def test_cross_site_posts_and_deletes_are_refused(client: FlaskClient, headers: dict) -> None:
    state = client.application.extensions["barkserve"]
    calls = [
        lambda: client.post("/synthesize", json=JOB, headers=headers),
        lambda: client.post("/jobs", json=JOB, headers=headers),
        lambda: client.post("/jobs", data={"file": (io.BytesIO(b"Hi."), "a.txt")}, headers=headers),
        lambda: client.post("/voices", data=clone_form(), headers=headers),
        lambda: client.delete("/voices/my-voice", headers=headers),
        lambda: client.delete("/jobs/abc", headers=headers),
        lambda: client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "alloy"},
                            headers=headers),
    ]  # fmt: skip
    for call in calls:
        assert error_code(call(), 403) == "cross_origin"
    assert state.jobs.page(10, 0, None)[1] == 0
    assert not state.config.output_dir.exists() or not any(state.config.output_dir.iterdir())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost"},
        {"Origin": "http://localhost:3000"},
        {"Origin": "https://127.0.0.1:8000"},
        {"Origin": "http://[::1]:8000", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_same_origin_and_api_clients_may_post(client: FlaskClient, headers: dict) -> None:
    assert client.post("/synthesize", json=JOB, headers=headers).status_code == 200
    assert client.post("/jobs", json=JOB, headers=headers).status_code == 202
    # The cloner itself answers (the bytes are no audio): the guard let the upload through.
    assert error_code(client.post("/voices", data=clone_form(), headers=headers), 415) == "unsupported_audio_format"
    assert error_code(client.delete("/voices/my-voice", headers=headers), 404) == "not_found"


@pytest.mark.parametrize("url", ["/health", "/voices", "/models", "/v1/models", "/jobs", "/audio/missing.wav"])
def test_reads_ignore_origin(client: FlaskClient, url: str) -> None:
    headers = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    assert client.get(url, headers=headers).status_code == client.get(url).status_code


def test_star_turns_both_checks_off(make_app: Any) -> None:
    client = make_app(engine_factory=FakeEngine, allowed_hosts=(" * ",)).test_client()
    for host in ("tts.example.com", "[::1"):
        headers = {"Host": host, "Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
        assert client.post("/synthesize", json=JOB, headers=headers).status_code == 200


def test_allowed_hosts_come_from_the_environment() -> None:
    config = ServerConfig.from_sources(env={"BARKSERVE_ALLOWED_HOSTS": "tts.example.com, ::1"})
    assert config.allowed_hosts == ("tts.example.com", "::1")
    assert HostPolicy.from_config(config).names == {"tts.example.com", "[::1]"}
    assert HostPolicy.from_config(ServerConfig.from_sources(env={"BARKSERVE_ALLOWED_HOSTS": "*"})).any_host
    assert HostPolicy.from_config(ServerConfig()).names == {"localhost", "127.0.0.1", "[::1]"}
