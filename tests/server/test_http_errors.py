"""Every error the app can answer is JSON: unknown routes, wrong methods (with `Allow`), 413, bad multipart."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from barkserve.server import create_app
from barkserve.synthesizer import Synthesizer
from support import FakeEngine, server_config

ERROR_KEYS = {"code", "message", "type", "param"}


@pytest.fixture(scope="module")
def app(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    root = tmp_path_factory.mktemp("errors")
    config = server_config(tiny_model_dir, root, max_body_bytes=4096, max_upload_bytes=64 * 1024)
    return create_app(config, synthesizer=Synthesizer(config, engine_factory=FakeEngine), start_jobs=False)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def json_error(response: object, status: int) -> dict:
    """The `error` object of a JSON error answer with `status`."""
    assert response.status_code == status, response.data  # type: ignore[attr-defined]
    assert response.mimetype == "application/json"  # type: ignore[attr-defined]
    error = response.get_json()["error"]  # type: ignore[attr-defined]
    assert set(error) == ERROR_KEYS
    return error


# One wrong method per route family, and the methods its `Allow` must name.
WRONG_METHODS = [
    ("PUT", "/synthesize", {"POST"}),
    ("POST", "/audio/x.wav", {"GET", "HEAD"}),
    ("POST", "/health", {"GET", "HEAD"}),
    ("DELETE", "/models", {"GET", "HEAD"}),
    ("PUT", "/voices", {"GET", "POST"}),
    ("POST", "/voices/my-voice", {"DELETE"}),
    ("GET", "/v1/audio/speech", {"POST"}),
    ("DELETE", "/v1/audio/speech/abc", {"GET", "HEAD"}),
    ("POST", "/v1/models", {"GET", "HEAD"}),
    ("PATCH", "/jobs", {"GET", "POST"}),
    ("POST", "/jobs/abc", {"GET", "DELETE"}),
    ("DELETE", "/jobs/abc/audio", {"GET", "HEAD"}),
    ("PUT", "/jobs/abc/chunks", {"GET", "HEAD"}),
]


@pytest.mark.parametrize(("method", "url", "allowed"), WRONG_METHODS, ids=[f"{m} {u}" for m, u, _ in WRONG_METHODS])
def test_wrong_method_is_json_405_with_allow(client: FlaskClient, method: str, url: str, allowed: set) -> None:
    response = client.open(url, method=method)
    error = json_error(response, 405)
    listed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed <= listed and method not in listed
    assert error["code"] == "method_not_allowed" and all(m in error["message"] for m in allowed)


@pytest.mark.parametrize("url", ["/nothing-here", "/v1/audio", "/jobs/", "/v1//models", "/synthesize/x"])
def test_unknown_route_is_json_404(client: FlaskClient, url: str) -> None:
    assert json_error(client.get(url), 404)["code"] == "not_found"


def test_body_over_the_limit_is_json_413(client: FlaskClient) -> None:
    response = client.post("/jobs", data=b"x" * (70 * 1024), content_type="application/json")
    assert json_error(response, 413)["code"] == "request_entity_too_large"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("multipart/form-data", b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx'),
        ("multipart/form-data; boundary=b", b"--b\r\nno headers end here"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n"),
        ("multipart/form-data; boundary=" + "b" * 300, b"junk"),
    ],
)
@pytest.mark.parametrize("url", ["/jobs", "/voices"])
def test_malformed_multipart_is_json_400(client: FlaskClient, url: str, content_type: str, data: bytes) -> None:
    json_error(client.post(url, data=data, content_type=content_type), 400)
