"""API keys, scopes, tenancy and limits through the app that `create_app` builds (Flask's test client)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_metrics import scrape, value

from barkserve.auth.keys import KeyStore
from barkserve.engine import EngineLoad
from barkserve.errors import ConfigError
from barkserve.server import access as access_module
from barkserve.server.access import ANY_KEY, ENDPOINT_SCOPES, NOT_OWNED, OWNED_PATHS, PUBLIC, Access
from support import FakeEngine, server_config

FAST = {"max_duration_sec": 0.1, "seed": 3}
SCOPES = ("speak", "clone", "jobs")
# Who may call each route, stated here rather than read from access.py's table, so that a route moved
# to another scope there fails below. A new route fails until it is added here (and in ENDPOINT_SCOPES).
EXPECTED_SCOPES = {
    "GET /health": PUBLIC,
    "GET /metrics": PUBLIC,  # public_metrics is on by default
    "GET /openapi.json": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /": PUBLIC,
    "GET /web/<path:filename>": PUBLIC,
    "GET /static/<path:filename>": PUBLIC,
    "GET /models": ANY_KEY,
    "GET /v1/models": ANY_KEY,
    "GET /voices": ANY_KEY,
    "GET /v1/audio/voices": ANY_KEY,
    "POST /synthesize": "speak",
    "GET /audio/<path:filename>": "speak",
    "POST /v1/audio/speech": "speak",
    "GET /v1/audio/speech/<sid>": "speak",
    "POST /v1/audio/speech/batch": "speak",
    "GET /voices/<path:name>/preview": "speak",  # makes a short sample once
    "POST /v1/audio/speech/plan": "speak",  # a dry run: plans, generates nothing
    "GET /lexicon": "lexicon",
    "PUT /lexicon": "lexicon",
    "DELETE /lexicon": "lexicon",
    "POST /voices": "clone",
    "DELETE /voices/<path:name>": "clone",
    "POST /jobs": "jobs",
    "POST /books/plan": "jobs",  # reads an upload as POST /jobs does, queues nothing
    "GET /jobs": "jobs",
    "GET /jobs/<job_id>": "jobs",
    "GET /jobs/<job_id>/chunks": "jobs",
    "GET /jobs/<job_id>/audio": "jobs",
    "GET /jobs/<job_id>/captions": "jobs",
    "DELETE /jobs/<job_id>": "jobs",
    "POST /jobs/<job_id>/deliveries/retry": "jobs",
    "GET /webhooks/secret": "jobs",
}


def routes_with_expected_scopes(app: Flask) -> list[tuple[str, str, str]]:
    """(method, path with each argument filled with 'x', expected scope) of every route of the app."""
    found = {
        f"{method} {rule.rule}": (method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "x", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    }
    unstated = sorted(set(found) - set(EXPECTED_SCOPES))
    assert not unstated, f"state the scope of {unstated} in EXPECTED_SCOPES (tests/server/test_access.py)"
    gone = sorted(set(EXPECTED_SCOPES) - set(found))
    assert not gone, f"EXPECTED_SCOPES names routes the app no longer has: {gone}"
    return [(method, path, EXPECTED_SCOPES[key]) for key, (method, path) in sorted(found.items())]


def access_of(app: Flask) -> Access:
    found: Access = app.extensions[access_module.EXTENSION]
    return found


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def new_key(app: Flask, name: str, scopes: str = "speak,clone,jobs", **limits: Any) -> dict[str, str]:
    _, secret = access_of(app).keys.create(name, scopes, **limits)
    return bearer(secret)


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    error: dict[str, Any] = response.get_json()["error"]
    return error


@pytest.fixture()
def app(make_app: Any) -> Flask:
    app: Flask = make_app(engine_factory=FakeEngine)
    return app


def wav_bytes(seconds: float = 2.0) -> bytes:
    rng = np.random.default_rng(0)
    t = np.arange(int(24_000 * seconds)) / 24_000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    audio = tone + 0.01 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), 24_000, format="WAV")
    return buf.getvalue()


def clone(client: FlaskClient, name: str, headers: dict[str, str]) -> Any:
    form = {"file": (io.BytesIO(wav_bytes()), "ref.wav"), "name": name}
    return client.post("/voices", data=form, content_type="multipart/form-data", headers=headers)


def test_every_route_is_classified(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints <= set(ENDPOINT_SCOPES), f"decide the scope of {sorted(endpoints - set(ENDPOINT_SCOPES))}"
    with_args = {rule.endpoint for rule in app.url_map.iter_rules() if rule.arguments}
    assert with_args <= set(OWNED_PATHS) | NOT_OWNED, f"decide who owns {sorted(with_args - set(OWNED_PATHS))}"


def test_without_keys_a_loopback_server_is_open_until_a_key_exists(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/jobs").status_code == 200
    assert client.post("/synthesize", json={"text": "Hello.", **FAST}).status_code == 200
    headers = new_key(app, "first", "jobs")
    error = error_of(client.get("/jobs"), 401)  # at once, in this running app
    assert error["code"] == "invalid_api_key" and "Authorization: Bearer" in error["message"]
    assert client.get("/jobs", headers=headers).status_code == 200
    assert client.get("/health").status_code == 200  # always open


def test_every_route_refuses_missing_wrong_revoked_and_unscoped_keys(app: Flask) -> None:
    keys = access_of(app).keys
    client = app.test_client()
    full = {scope: new_key(app, f"only-{scope}", scope) for scope in SCOPES}
    _, revoked = keys.create("gone", "admin")
    keys.revoke("gone")
    _, valid = keys.create("valid", "admin")
    wrong = [
        {},  # no header
        bearer(revoked),
        bearer(valid[:-3] + ("abc" if not valid.endswith("abc") else "xyz")),  # right id, wrong secret
        bearer("bk_" + "0123456789abcdef" + valid[19:]),  # unknown id
        bearer("sk-" + "a" * 48),  # an OpenAI key
        {"Authorization": valid},  # no scheme
        {"Authorization": f"Basic {valid}"},
        {"Authorization": "Bearer"},
    ]
    checked = 0
    for method, path, scope in routes_with_expected_scopes(app):
        if scope == PUBLIC:
            assert client.open(path, method=method).status_code != 401, path
            continue
        messages = set()
        for headers in wrong:
            response = client.open(path, method=method, headers=headers)
            error = error_of(response, 401)
            assert error["code"] == "invalid_api_key", (method, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
            messages.add(error["message"])
        # One message for an unknown id, a wrong secret and a revoked key: none says whether a key exists.
        assert len(messages) == 3, messages  # missing header, malformed header, invalid key
        for have, headers in full.items():
            response = client.open(path, method=method, headers=headers)
            if scope in (ANY_KEY, have):
                assert response.status_code not in (401, 403), (method, path, have)
            else:
                error = error_of(response, 403)
                assert error["code"] == "insufficient_scope" and f"'{scope}'" in error["message"]
                assert f'scope="{scope}"' in response.headers["WWW-Authenticate"]
        assert client.open(path, method=method, headers=bearer(valid)).status_code not in (401, 403)
        checked += 1
    assert checked == sum(scope != PUBLIC for scope in EXPECTED_SCOPES.values())


def test_a_revoked_key_fails_its_next_request(app: Flask) -> None:
    client = app.test_client()
    headers = new_key(app, "soon-gone", "jobs")
    assert client.get("/jobs", headers=headers).status_code == 200
    other_process = KeyStore(app.extensions["barkserve"].config.database)  # `barkserve keys revoke`
    other_process.revoke("soon-gone")
    assert error_of(client.get("/jobs", headers=headers), 401)["code"] == "invalid_api_key"


def test_openai_routes_answer_in_openai_error_shape(app: Flask) -> None:
    client = app.test_client()
    new_key(app, "someone", "speak")
    error = error_of(client.get("/v1/models", headers=bearer("bk_nope")), 401)
    assert error == {"code": "invalid_api_key", "message": error["message"], "type": "invalid_request_error",
                     "param": None}  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=300))
def test_malformed_authorization_headers_are_401_never_500(app: Flask, header: str) -> None:
    if not access_of(app).keys.any_created():
        new_key(app, "fuzz", "speak")
    response = app.test_client().get("/v1/models", headers={"Authorization": header})
    assert error_of(response, 401)["code"] == "invalid_api_key"
    # Never echoed: the answer is one of the fixed ones (a header like "invalid_requ" is in them anyway).
    fixed = {app.test_client().get("/v1/models", headers={"Authorization": h}).get_data() for h in ("x", "Bearer x")}
    assert response.get_data() in fixed


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "tts.example.com"])
def test_a_non_loopback_server_refuses_to_start_without_a_key(make_app: Any, host: str) -> None:
    with pytest.raises(ConfigError, match=r"keys create --name admin --scopes admin.*--auth off"):
        make_app(engine_factory=FakeEngine, host=host)
    client = make_app(engine_factory=FakeEngine, host=host, auth="off", allowed_hosts=("*",)).test_client()
    assert client.get("/jobs").status_code == 200  # opted out: one anonymous tenant


def test_a_non_loopback_server_starts_with_a_key_and_enforces_it(
    make_app: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = server_config(tiny_model_dir, tmp_path)
    config.jobs_dir.mkdir(parents=True)
    _, secret = KeyStore(config.database).create("ops", "jobs")
    client = make_app(engine_factory=FakeEngine, host="0.0.0.0").test_client()
    assert error_of(client.get("/jobs"), 401)["code"] == "invalid_api_key"
    assert client.get("/jobs", headers=bearer(secret)).status_code == 200


def test_auth_on_needs_a_key_even_on_loopback(make_app: Any) -> None:
    with pytest.raises(ConfigError, match="has auth=on but has no active API key"):
        make_app(engine_factory=FakeEngine, auth="on")


def test_metrics_can_require_an_admin_key(make_app: Any) -> None:
    app = make_app(engine_factory=FakeEngine, public_metrics=False)
    client = app.test_client()
    speak, admin = new_key(app, "s", "speak"), new_key(app, "a", "admin")
    assert client.get("/metrics").status_code == 401
    assert error_of(client.get("/metrics", headers=speak), 403)["code"] == "insufficient_scope"
    assert client.get("/metrics", headers=admin).status_code == 200


def test_output_files_belong_to_their_key(app: Flask) -> None:
    client = app.test_client()
    alice, bob, admin = new_key(app, "alice"), new_key(app, "bob"), new_key(app, "root", "admin")
    made = client.post("/synthesize", json={"text": "Hello.", **FAST}, headers=alice).get_json()
    assert client.get(made["url"], headers=alice).status_code == 200
    theirs = client.get(made["url"], headers=bob)
    missing = client.get("/audio/bark_20990101-000000_000000000000.wav", headers=bob)
    assert error_of(theirs, 404)["message"].replace(made["filename"], "F") == error_of(missing, 404)["message"].replace(
        "bark_20990101-000000_000000000000.wav", "F"
    )
    assert client.get(made["url"], headers=admin).status_code == 200


def test_jobs_belong_to_their_key(app: Flask) -> None:
    client = app.test_client()
    alice, bob, admin = new_key(app, "alice"), new_key(app, "bob"), new_key(app, "root", "admin")
    same_key = {"Idempotency-Key": "order-1"}
    mine = client.post("/jobs", json={"text": "One.", **FAST}, headers={**alice, **same_key})
    theirs = client.post("/jobs", json={"text": "Two, other.", **FAST}, headers={**bob, **same_key})
    assert mine.status_code == theirs.status_code == 202  # one key's Idempotency-Key is not another's
    job_a, job_b = mine.get_json()["id"], theirs.get_json()["id"]
    assert [j["id"] for j in client.get("/jobs", headers=alice).get_json()["jobs"]] == [job_a]
    assert [j["id"] for j in client.get("/jobs", headers=bob).get_json()["jobs"]] == [job_b]
    assert {j["id"] for j in client.get("/jobs", headers=admin).get_json()["jobs"]} == {job_a, job_b}
    app.extensions["barkserve"].runner.run_once(job_a)
    for suffix in ("", "/chunks", "/audio"):
        assert client.get(f"/jobs/{job_a}{suffix}", headers=alice).status_code == 200, suffix
        assert error_of(client.get(f"/jobs/{job_a}{suffix}", headers=bob), 404)["code"] == "not_found"
        assert client.get(f"/jobs/{job_a}{suffix}", headers=admin).status_code == 200
    assert error_of(client.delete(f"/jobs/{job_b}", headers=alice), 404)["code"] == "not_found"
    assert client.get(f"/jobs/{job_b}", headers=bob).get_json()["state"] == "queued"  # untouched
    assert client.delete(f"/jobs/{job_b}", headers=admin).get_json()["state"] == "cancelled"


def test_cloned_voices_belong_to_their_key_and_shared_voices_stay_shared(app: Flask) -> None:
    client = app.test_client()
    alice, bob, admin = new_key(app, "alice"), new_key(app, "bob"), new_key(app, "root", "admin")
    assert clone(client, "alices-voice", alice).status_code == 201
    listed = {name: client.get("/voices", headers=h).get_json()["custom"] for name, h in
              (("alice", alice), ("bob", bob), ("admin", admin))}  # fmt: skip
    assert listed == {"alice": ["alices-voice"], "bob": [], "admin": ["alices-voice"]}
    openai_custom = [v["id"] for v in client.get("/v1/audio/voices", headers=bob).get_json()["voices"]
                     if v["kind"] == "custom"]  # fmt: skip
    assert openai_custom == []
    body = {"text": "Hi.", "voice_preset": "alices-voice", **FAST}
    assert client.post("/synthesize", json=body, headers=alice).status_code == 200
    used = error_of(client.post("/synthesize", json=body, headers=bob), 400)
    unknown = error_of(client.post("/synthesize", json={**body, "voice_preset": "nobodys"}, headers=bob), 400)
    assert used["code"] == unknown["code"] == "invalid_voice"
    assert used["message"].replace("alices-voice", "N") == unknown["message"].replace("nobodys", "N")
    speech = {"model": "tts-1", "input": "Hi.", "voice": "alices-voice", "response_format": "wav"}
    assert error_of(client.post("/v1/audio/speech", json=speech, headers=bob), 400)["code"] == "invalid_voice"
    assert error_of(client.post("/jobs", json=body, headers=bob), 400)["code"] == "invalid_voice"
    assert error_of(client.delete("/voices/alices-voice", headers=bob), 404)["code"] == "not_found"
    assert clone(client, "alices-voice", bob).status_code == 409  # one namespace of names
    assert client.delete("/voices/alices-voice", headers=alice).status_code == 200
    assert clone(client, "alices-voice", bob).status_code == 201  # the name is free again
    # A voice the operator put in the folder (or `barkserve clone` made) is shared, and only admins delete it.
    voices_dir = app.extensions["barkserve"].config.voices_dir
    (voices_dir / "house.npz").write_bytes((voices_dir / "alices-voice.npz").read_bytes())
    assert "house" in client.get("/voices", headers=alice).get_json()["custom"]
    assert client.post("/synthesize", json={**body, "voice_preset": "house"}, headers=alice).status_code == 200
    assert error_of(client.delete("/voices/house", headers=alice), 403)["code"] == "voice_protected"
    assert client.delete("/voices/house", headers=admin).status_code == 200


def test_a_failed_clone_leaves_its_name_free(app: Flask) -> None:
    client = app.test_client()
    alice = new_key(app, "alice")
    form = {"file": (io.BytesIO(b"not audio at all"), "ref.wav"), "name": "try"}
    assert client.post("/voices", data=form, content_type="multipart/form-data", headers=alice).status_code >= 400
    assert access_of(app).keys.voice_owner("try") == (False, None)
    assert clone(client, "try", new_key(app, "bob")).status_code == 201


def test_speech_progress_belongs_to_its_key(app: Flask) -> None:
    client = app.test_client()
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    speech = {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav", **FAST}
    response = client.post("/v1/audio/speech", json=speech, headers=alice)
    assert response.status_code == 200
    response.get_data()
    sid = response.headers["X-Request-Id"]
    assert client.get(f"/v1/audio/speech/{sid}", headers=alice).status_code == 200
    assert error_of(client.get(f"/v1/audio/speech/{sid}", headers=bob), 404)["code"] == "not_found"


@pytest.fixture()
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(time.time(), tick=False) as traveller:
        yield traveller


def test_requests_over_the_rate_get_429_until_the_minute_passes(app: Flask, clock: time_machine.Coordinates) -> None:
    client = app.test_client()
    limited, other = new_key(app, "limited", "jobs", rate_per_min=3), new_key(app, "free", "jobs")
    assert [client.get("/jobs", headers=limited).status_code for _ in range(3)] == [200, 200, 200]
    over = client.get("/jobs", headers=limited)
    assert error_of(over, 429)["code"] == "rate_limit_exceeded" and over.headers["Retry-After"] == "60"
    assert client.get("/jobs", headers=other).status_code == 200  # the other key is not limited by it
    openai_over = error_of(client.get("/v1/models", headers=limited), 429)
    assert openai_over["code"] == "rate_limit_exceeded" and openai_over["type"] == "invalid_request_error"
    clock.shift(59)
    assert client.get("/jobs", headers=limited).status_code == 429
    clock.shift(1.5)
    assert client.get("/jobs", headers=limited).status_code == 200


def test_audio_over_the_daily_quota_gets_429_until_the_day_passes(app: Flask, clock: time_machine.Coordinates) -> None:
    client = app.test_client()
    headers = new_key(app, "quota", "speak,jobs", quota=1)
    made, requests = 0.0, 0
    while made < 1.0:
        response = client.post("/synthesize", json={"text": "Hello there, how are you?", **FAST}, headers=headers)
        made, requests = made + response.get_json()["duration_sec"], requests + 1
        assert requests < 100
    over = client.post("/synthesize", json={"text": "Hello.", **FAST}, headers=headers)
    assert error_of(over, 429)["code"] == "rate_limit_exceeded" and "audio seconds" in error_of(over, 429)["message"]
    assert 86_000 <= int(over.headers["Retry-After"]) <= 86_400
    assert error_of(client.post("/jobs", json={"text": "Hi.", **FAST}, headers=headers), 429)["code"] == (
        "rate_limit_exceeded"
    )
    assert client.get("/jobs", headers=headers).status_code == 200  # only new synthesis is refused
    clock.shift(86_401)
    assert client.post("/synthesize", json={"text": "Hello.", **FAST}, headers=headers).status_code == 200


def test_job_audio_counts_against_the_quota_and_in_the_metrics(app: Flask) -> None:
    client = app.test_client()
    headers = new_key(app, "books", "jobs", quota=3600)
    before = scrape(client)
    job = client.post("/jobs", json={"text": "One sentence. Another one here.", **FAST}, headers=headers).get_json()
    app.extensions["barkserve"].runner.run_once(job["id"])
    done = client.get(f"/jobs/{job['id']}", headers=headers).get_json()
    assert done["state"] == "succeeded" and done["audio_sec"] > 0
    after = scrape(client)
    key = access_of(app).keys.list_keys()[0]
    assert access_of(app).limiter.audio_used(key.id, 3600) == pytest.approx(done["audio_sec"], abs=0.01)
    moved = value(after, "barkserve_audio_seconds_total", route="/jobs") - value(
        before, "barkserve_audio_seconds_total", route="/jobs"
    )
    assert moved == pytest.approx(done["audio_sec"], abs=0.01)
    assert value(after, "barkserve_key_audio_seconds_total", key="books") == pytest.approx(done["audio_sec"], abs=0.01)


def test_per_key_metrics_and_access_log_name_the_key_never_the_secret(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    _, secret = access_of(app).keys.create("reporter", "speak")
    with caplog.at_level(logging.INFO, logger="barkserve.access"):
        made = client.post("/synthesize", json={"text": "Hello.", **FAST}, headers=bearer(secret)).get_json()
        assert client.get("/jobs", headers=bearer(secret)).status_code == 403
    samples = scrape(client)
    assert value(samples, "barkserve_key_requests_total", key="reporter", status="200") == 1
    assert value(samples, "barkserve_key_requests_total", key="reporter", status="403") == 1
    assert value(samples, "barkserve_key_audio_seconds_total", key="reporter") == pytest.approx(
        made["duration_sec"], abs=1e-3
    )
    assert secret not in client.get("/metrics").get_data(as_text=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "barkserve.access"]
    assert any("key=reporter" in line and "route=/synthesize" in line for line in lines), lines
    assert all(secret not in line and secret[3:19] not in line for line in lines)


def test_a_full_engine_queue_refuses_new_synthesis_with_503(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(engine_factory=FakeEngine, max_queue_depth=4)
    synth = app.extensions["barkserve"].synthesizer
    client = app.test_client()
    monkeypatch.setattr(synth, "queued", lambda: 5)
    for path, body in (("/synthesize", {"text": "Hi."}), ("/jobs", {"text": "Hi."}),
                       ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "alloy"})):  # fmt: skip
        response = client.post(path, json=body)
        assert error_of(response, 503)["code"] == "server_overloaded" and response.headers["Retry-After"] == "5"
    assert client.get("/jobs").status_code == 200  # reads still answer
    monkeypatch.setattr(synth, "queued", lambda: 4)
    assert client.post("/synthesize", json={"text": "Hi.", **FAST}).status_code == 200


def test_the_queue_depth_is_the_sum_of_the_engines_queues(make_app: Any) -> None:
    synth = make_app(engine_factory=FakeEngine).extensions["barkserve"].synthesizer

    class Engine(FakeEngine):
        def __init__(self, queued: int) -> None:
            self.queued = queued

        def load(self) -> EngineLoad:
            return EngineLoad(queued=self.queued)

    synth._engines = {"a": Engine(3), "b": Engine(4), "c": Engine(0)}
    assert synth.queued() == 7


def test_the_openapi_document_declares_the_bearer_scheme(app: Flask, make_app: Any) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearer"] == {**spec["components"]["securitySchemes"]["bearer"],
                                                               "type": "http", "scheme": "bearer"}  # fmt: skip
    synth = spec["paths"]["/synthesize"]["post"]
    assert synth["security"] == [{"bearer": []}] and {"401", "403", "429", "503"} <= set(synth["responses"])
    assert "Retry-After" in synth["responses"]["429"]["headers"]
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert "'clone' scope" in spec["paths"]["/voices"]["post"]["description"]
    off = json.loads(make_app(engine_factory=FakeEngine, auth="off").test_client().get("/openapi.json").data)
    assert "securitySchemes" not in off["components"] and off["paths"]["/jobs"]["get"]["security"] == []


def test_streamed_speech_counts_against_the_quota(app: Flask) -> None:
    client = app.test_client()
    headers = new_key(app, "talker", "speak", quota=3600)
    speech = {"model": "tts-1", "input": "Hello there. How are you?", "voice": "alloy", "response_format": "wav"}
    response = client.post("/v1/audio/speech", json={**speech, **FAST}, headers=headers)
    assert response.status_code == 200 and len(response.get_data()) > 44
    made = client.get(f"/v1/audio/speech/{response.headers['X-Request-Id']}", headers=headers).get_json()
    key = access_of(app).keys.list_keys()[0]
    assert made["audio_sec"] > 0
    assert access_of(app).limiter.audio_used(key.id, 3600) == pytest.approx(made["audio_sec"], abs=0.002)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("", False), ("::", False), ("192.168.1.5", False), ("tts.lan", False)],
)  # fmt: skip
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert access_module.is_loopback(host) is loopback
