"""API keys on a real `barkserve serve` process: the CLI, the official OpenAI client, revocation, restarts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import requests

from barkserve.server import create_app
from barkserve.server.access import ANY_KEY, ENDPOINT_SCOPES, PUBLIC
from serverproc import create_key, free_port, running_server
from support import app_routes, server_config

FAST = {"max_duration_sec": 0.2, "seed": 5}
HANG_GUARD_SEC = 300  # stops a hung process; not a speed assertion


def keys_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "barkserve.cli", "keys", *args, "--jobs-dir", str(root / "jobs")]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=HANG_GUARD_SEC)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def client(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=300)


def test_keys_on_a_real_server_survive_a_restart_and_revocation_is_immediate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    alice = create_key(tmp_path, "alice", "speak,jobs", "--rate", "1000/min")
    bob = create_key(tmp_path, "bob", "speak,jobs")
    with running_server(tiny_model_dir, tmp_path) as base:
        speech = client(base, alice).audio.speech.create(
            model="tts-1", voice="alloy", input="Hello there.", response_format="wav", extra_body=FAST
        )
        assert speech.content[:4] == b"RIFF" and len(speech.content) > 1000
        with pytest.raises(openai.AuthenticationError) as refused:
            client(base, alice[:-2] + "zz").audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
        assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
        assert requests.get(f"{base}/jobs", timeout=30).status_code == 401
        made = requests.post(f"{base}/synthesize", json={"text": "Hi.", **FAST}, headers=auth(alice), timeout=300)
        job = requests.post(f"{base}/jobs", json={"text": "Hi.", **FAST}, headers=auth(alice), timeout=60).json()
        assert requests.get(f"{base}{made.json()['url']}", headers=auth(bob), timeout=30).status_code == 404
        assert requests.get(f"{base}/jobs/{job['id']}", headers=auth(bob), timeout=30).status_code == 404
        assert keys_cli(tmp_path, "revoke", "bob").returncode == 0  # another process, the server running
        assert requests.get(f"{base}/jobs", headers=auth(bob), timeout=30).status_code == 401
    listed = keys_cli(tmp_path, "list").stdout
    assert "alice" in listed and "1000/min" in listed and "revoked" in listed and alice not in listed
    with running_server(tiny_model_dir, tmp_path) as base:  # a restart keeps keys, limits, jobs and owners
        jobs = requests.get(f"{base}/jobs", headers=auth(alice), timeout=30).json()["jobs"]
        assert [j["id"] for j in jobs] == [job["id"]]
        assert requests.get(f"{base}/jobs", headers=auth(bob), timeout=30).status_code == 401
        assert requests.get(f"{base}{made.json()['url']}", headers=auth(alice), timeout=30).status_code == 200
    assert "api_keys=required" in (tmp_path / "server.log").read_text()


def test_a_real_server_limits_a_key_and_survives_bad_headers(tiny_model_dir: Path, tmp_path: Path) -> None:
    limited = create_key(tmp_path, "limited", "jobs", "--rate", "3/min")
    with running_server(tiny_model_dir, tmp_path) as base:
        codes = [requests.get(f"{base}/jobs", headers=auth(limited), timeout=30).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        over = requests.get(f"{base}/jobs", headers=auth(limited), timeout=30)
        assert over.json()["error"]["code"] == "rate_limit_exceeded" and 1 <= int(over.headers["Retry-After"]) <= 60
        for header in ("Bearer " + "a" * 100_000, "Bearer bk_\u00e9\u00ff", "Bearer  ", "bearer " + limited + " x"):
            response = requests.get(f"{base}/v1/models", headers={"Authorization": header.encode("latin-1")},
                                    timeout=30)  # fmt: skip
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key", header[:20]
        huge = requests.get(f"{base}/v1/models", headers={"Authorization": "Bearer " + "a" * 400_000}, timeout=30)
        assert 400 <= huge.status_code < 500  # waitress refuses headers over its limit, before the app
        assert requests.get(f"{base}/health", timeout=30).status_code == 200


def test_serve_beyond_loopback_refuses_to_start_without_a_key(tiny_model_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "barkserve.cli", "serve", "--model", str(tiny_model_dir), "--offline",
           "--host", "0.0.0.0", "--port", str(free_port()), "--jobs-dir", str(tmp_path / "jobs")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=HANG_GUARD_SEC)
    assert done.returncode == 1
    assert "barkserve keys create --name admin --scopes admin" in done.stderr and "--auth off" in done.stderr


def test_every_route_of_a_real_server_checks_the_key_and_its_scope(tiny_model_dir: Path, tmp_path: Path) -> None:
    scoped = {scope: create_key(tmp_path, f"only-{scope}", scope) for scope in ("speak", "clone", "jobs")}
    revoked = create_key(tmp_path, "revoked", "admin")
    assert keys_cli(tmp_path, "revoke", "revoked").returncode == 0
    admin = create_key(tmp_path, "admin", "admin")
    wrong = [{}, auth(revoked), auth(admin[:-4] + "AAAA"), auth("bk_0123456789abcdef_" + "A" * 43), auth(""),
             {"Authorization": admin}]  # fmt: skip
    # The app's own routes (built here only for its url_map): a new route cannot be left out.
    app = create_app(server_config(tiny_model_dir, tmp_path / "map", auth="off"), start_jobs=False)
    routes = app_routes(app)
    with running_server(tiny_model_dir, tmp_path) as base:
        checked = 0
        for endpoint, method, path in routes:
            scope = ENDPOINT_SCOPES[endpoint]
            url = f"{base}{path}"
            if scope == PUBLIC:
                assert requests.request(method, url, timeout=60).status_code != 401, path
                continue
            for headers in wrong:
                response = requests.request(method, url, headers=headers, timeout=60)
                assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key", path
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            for have, secret in scoped.items():
                status = requests.request(method, url, headers=auth(secret), timeout=60).status_code
                if scope in (ANY_KEY, have):
                    assert status not in (401, 403), (method, path, have)
                else:
                    assert status == 403, (method, path, have)
            assert requests.request(method, url, headers=auth(admin), timeout=60).status_code not in (401, 403)
            checked += 1
        assert checked >= 15
