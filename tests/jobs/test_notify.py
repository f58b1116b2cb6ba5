"""Job notifications: signed webhooks (verified with the Standard Webhooks reference library) and
Audiobookshelf uploads, sent to real HTTP servers started by the tests; the SSRF checks; the outbox."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from dataclasses import replace
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_book_jobs import upload
from test_jobs import database_urls, fresh_url

from barkserve.config import NotifySettings, ServerConfig
from barkserve.errors import ConfigError, InvalidRequest
from barkserve.jobs.notify import BACKOFF_SEC, Notifier, Signer, check_webhook_url
from barkserve.jobs.store import JobStore, utcnow
from bookfiles import make_epub
from support import FakeEngine

LOOPBACK = ("127.0.0.0/8",)
LOOP = ServerConfig(webhook_allow_networks=LOOPBACK).notify  # the receivers of these tests are on loopback
FAST = {"max_duration_sec": 0.1, "sentence_pause_sec": 0.1, "seed": 9}


class Receiver:
    """A real HTTP server on loopback that records each request and answers with the next queued status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = {"path": self.path, "headers": dict(self.headers), "body": body}
                receiver.requests.append(request)
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.answer(request)
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("location", "http://127.0.0.1:1/elsewhere")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, request: dict[str, Any]) -> int:
        return 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


class Clock:
    def __init__(self) -> None:
        self.now = utcnow() + dt.timedelta(seconds=1)

    def __call__(self) -> dt.datetime:
        return self.now


def new_job(store: JobStore, webhook: str | None, tenant: str | None = None) -> Any:
    fields = {"text": "hi", "voice": "v", "model": "m", "format": "mp3", "options": {"seed": 1}}
    job, _ = store.create(idempotency_key=None, request_hash="h", webhook=webhook, tenant=tenant, **fields)
    return job


def end(store: JobStore, job_id: str, state: str = "succeeded") -> None:
    assert store.claim("w", 60, job_id) is not None
    assert store.finish(job_id, state, "boom" if state == "failed" else None, owner="w")


@pytest.mark.parametrize("db", database_urls())
def test_a_finished_job_posts_a_signed_webhook(tmp_path: Path, db: str, receiver: Receiver) -> None:
    store = JobStore(fresh_url(db, tmp_path))
    notifier = Notifier(store, LOOP, tmp_path)
    job = new_job(store, receiver.url + "/hook", tenant="k1")
    assert notifier.run_due() == 0  # nothing until the job ends
    end(store, job.id)
    assert notifier.run_due() == 1
    [sent] = receiver.requests
    assert sent["path"] == "/hook"
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    payload = Webhook(notifier.signer.secret("k1")).verify(sent["body"], headers)  # the reference verifier
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job.id
    assert payload["data"]["state"] == "succeeded" and payload["data"]["webhook"] == receiver.url + "/hook"
    with pytest.raises(WebhookVerificationError):  # another key's secret does not verify it
        Webhook(notifier.signer.secret("k2")).verify(sent["body"], headers)
    with pytest.raises(WebhookVerificationError):  # nor does a changed body
        Webhook(notifier.signer.secret("k1")).verify(sent["body"].replace(b"succeeded", b"failed"), headers)
    [delivery] = store.deliveries(job.id)
    assert delivery.state == "delivered" and delivery.attempts == 1 and delivery.log[0]["status"] == 200
    assert headers["webhook-id"] == delivery.id
    assert notifier.run_due() == 0  # delivered once, not again


def test_failures_are_retried_with_backoff_then_given_up_and_retried_on_request(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    clock = Clock()
    notifier = Notifier(store, replace(LOOP, max_attempts=3), tmp_path, clock=clock)
    job = new_job(store, receiver.url)
    end(store, job.id, "failed")
    receiver.statuses = [500, 503, 502, 200]
    assert notifier.run_due() == 1
    assert notifier.run_due() == 0  # not due before its backoff
    clock.now += dt.timedelta(seconds=BACKOFF_SEC[0] - 1)
    assert notifier.run_due() == 0
    clock.now += dt.timedelta(seconds=1)
    assert notifier.run_due() == 1
    clock.now += dt.timedelta(seconds=BACKOFF_SEC[1])
    assert notifier.run_due() == 1
    [delivery] = store.deliveries(job.id)
    assert delivery.state == "failed" and delivery.attempts == 3
    assert [e["status"] for e in delivery.log] == [500, 503, 502]
    assert all("answered" in e["error"] for e in delivery.log)
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1  # every attempt of one delivery has the same id (receivers deduplicate on it)
    clock.now += dt.timedelta(days=1)
    assert notifier.run_due() == 0  # given up
    assert store.retry_deliveries(job.id, clock.now) == 1
    assert notifier.run_due() == 1
    [delivery] = store.deliveries(job.id)
    assert delivery.state == "delivered" and len(delivery.log) == 4
    assert json.loads(receiver.requests[-1]["body"])["type"] == "job.failed"


def test_redirects_are_not_followed_and_410_stops(tmp_path: Path, receiver: Receiver) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    clock = Clock()
    notifier = Notifier(store, LOOP, tmp_path, clock=clock)
    receiver.statuses = [307, 410]
    job = new_job(store, receiver.url)
    end(store, job.id)
    notifier.run_due()
    clock.now += dt.timedelta(hours=1)
    notifier.run_due()
    [delivery] = store.deliveries(job.id)
    assert [e["status"] for e in delivery.log] == [307, 410] and delivery.state == "failed"
    assert len(receiver.requests) == 2  # the redirect's target (port 1) was never called


def test_a_cancelled_job_notifies_and_a_job_without_webhook_does_not(tmp_path: Path, receiver: Receiver) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    notifier = Notifier(store, LOOP, tmp_path)
    quiet, loud = new_job(store, None), new_job(store, receiver.url)
    store.cancel(quiet.id)
    store.cancel(loud.id)
    assert notifier.run_due() == 1
    assert json.loads(receiver.requests[0]["body"])["type"] == "job.cancelled"
    assert store.deliveries(quiet.id) == []


def test_a_delivery_that_comes_to_resolve_privately_is_refused_at_send(tmp_path: Path, receiver: Receiver) -> None:
    """DNS rebinding: the name was public at submission; at delivery it resolves to loopback."""
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    addresses = {"hooks.example.com": ["93.184.216.34"]}
    url = "http://hooks.example.com/x"
    check_webhook_url(url, resolver=lambda host, port: addresses[host])
    job = new_job(store, url)
    end(store, job.id)
    addresses["hooks.example.com"] = ["127.0.0.1"]
    notifier = Notifier(store, NotifySettings(), tmp_path, resolver=lambda host, port: addresses[host])
    notifier.run_due()
    [delivery] = store.deliveries(job.id)
    assert delivery.state == "failed" and "refused address" in delivery.log[0]["error"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://", "no host"),
        ("https://user:pw@example.com/", "user:password"),
        ("http://127.0.0.1:8000/x", "private, loopback"),
        ("http://localhost/x", "private, loopback"),
        ("http://[::1]/x", "private, loopback"),
        ("http://10.1.2.3/x", "private, loopback"),
        ("http://169.254.169.254/latest/meta-data", "private, loopback"),  # cloud metadata
        ("http://[::ffff:127.0.0.1]/x", "private, loopback"),
        ("http://0.0.0.0/x", "private, loopback"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://exa mple.com/", "without spaces"),
        ("http://" + "a" * 2100 + ".com/", "at most 2048"),
        (42, "URL string"),
        ("", "URL string"),
    ],
)
def test_bad_or_refused_webhooks(url: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_webhook_url(url)


def test_allowed_networks_open_private_addresses() -> None:
    allow = ServerConfig(webhook_allow_networks=("10.0.0.0/8",)).notify.allow_networks
    assert check_webhook_url("http://10.1.2.3/x", allow) == "http://10.1.2.3/x"
    with pytest.raises(InvalidRequest):
        check_webhook_url("http://192.168.1.1/x", allow)
    with pytest.raises(ConfigError, match="CIDRs"):
        _ = ServerConfig(webhook_allow_networks=("ten/8",)).notify


def test_the_secret_is_the_configured_one_or_one_kept_in_the_database(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    made = Signer.for_store(store).secret("k")
    assert made.startswith("whsec_") and Signer.for_store(store).secret("k") == made  # kept, shared
    assert Signer.for_store(store, "configured").secret("k") != made
    assert Signer(b"x").secret("a") != Signer(b"x").secret("b") != Signer(b"x").secret(None)


def test_the_http_api_takes_a_webhook_and_the_key_reads_its_secret(make_app: Any, receiver: Receiver) -> None:
    refusing = make_app(FakeEngine).test_client()
    answer = refusing.post("/jobs", json={"text": "Hello.", "webhook": receiver.url, **FAST})
    assert answer.status_code == 400 and "webhook_allow_networks" in answer.get_json()["error"]["message"]
    answer = refusing.post("/jobs", json={"text": "Hello.", "webhook": "gopher://x", **FAST})
    assert answer.status_code == 400
    app = make_app(FakeEngine, webhook_allow_networks=LOOPBACK)
    client, state = app.test_client(), app.extensions["barkserve"]
    created = client.post("/jobs", json={"text": "Hello there.", "webhook": receiver.url + "/done", **FAST})
    assert created.status_code == 202, created.data
    job = created.get_json()
    assert job["webhook"] == receiver.url + "/done"
    assert state.runner.run_once()
    assert state.runner.notifier.run_due() == 1
    secret = client.get("/webhooks/secret").get_json()["secret"]
    [sent] = receiver.requests
    payload = Webhook(secret).verify(sent["body"], {k.lower(): v for k, v in sent["headers"].items()})
    assert payload["data"]["id"] == job["id"] and payload["data"]["audio_url"] == f"/jobs/{job['id']}/audio"
    detail = client.get(f"/jobs/{job['id']}").get_json()
    assert [(d["kind"], d["state"], d["attempts"]) for d in detail["deliveries"]] == [("webhook", "delivered", 1)]
    assert client.post(f"/jobs/{job['id']}/deliveries/retry").status_code == 409  # nothing failed


class Audiobookshelf(Receiver):
    """POST /api/upload as Audiobookshelf documents it: a Bearer token, multipart form fields title, author,
    series, library, folder (ids), the files under any field names; 200, 403 or 404."""

    TOKEN = "abs-token"

    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[dict[str, Any]] = []

    def answer(self, request: dict[str, Any]) -> int:
        if request["path"] != "/api/upload":
            return 404
        if request["headers"].get("Authorization") != f"Bearer {self.TOKEN}":
            return 401
        content_type = request["headers"]["Content-Type"]
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + request["body"])
        fields, files = {}, {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                files[name] = (part.get_filename(), part.get_payload(decode=True))
            else:
                fields[name] = part.get_content()
        if fields.get("library") != "lib_1" or fields.get("folder") != "fol_1":
            return 404
        self.uploads.append({"fields": fields, "files": files})
        return 200


@pytest.fixture()
def audiobookshelf() -> Any:
    server = Audiobookshelf()
    yield server
    server.close()


def abs_settings(server: Audiobookshelf, library: str = "lib_1") -> dict[str, str]:
    return {"audiobookshelf_url": server.url, "audiobookshelf_token": Audiobookshelf.TOKEN,
            "audiobookshelf_library": library, "audiobookshelf_folder": "fol_1"}  # fmt: skip


def test_a_finished_book_is_uploaded_to_audiobookshelf(make_app: Any, tmp_path: Path, audiobookshelf: Any) -> None:
    app = make_app(FakeEngine, **abs_settings(audiobookshelf))
    client, state = app.test_client(), app.extensions["barkserve"]
    epub = make_epub(tmp_path / "b.epub")
    created = upload(client, epub, audiobookshelf="true")
    assert created.status_code == 202, created.data
    job = created.get_json()
    assert job["audiobookshelf"] is True
    while state.runner.run_once():
        pass
    assert state.runner.notifier.run_due() == 1
    [sent] = audiobookshelf.uploads
    assert sent["fields"]["title"] == "Storm Over the Harbour" and sent["fields"]["author"] == "Ann Writer"
    [(name, data)] = sent["files"].values()
    m4b = client.get(f"/jobs/{job['id']}/audio").data
    assert name == "Storm Over the Harbour.m4b" and data == m4b
    detail = client.get(f"/jobs/{job['id']}").get_json()
    assert detail["state"] == "succeeded"
    assert [(d["kind"], d["state"]) for d in detail["deliveries"]] == [("audiobookshelf", "delivered")]


def test_a_failed_upload_leaves_the_job_succeeded_and_is_retried_on_request(
    make_app: Any, tmp_path: Path, audiobookshelf: Any
) -> None:
    app = make_app(FakeEngine, **abs_settings(audiobookshelf, library="lib_missing"), webhook_max_attempts=1)
    client, state = app.test_client(), app.extensions["barkserve"]
    job = upload(client, make_epub(tmp_path / "b.epub"), audiobookshelf="true").get_json()
    while state.runner.run_once():
        pass
    state.runner.notifier.run_due()
    detail = client.get(f"/jobs/{job['id']}").get_json()
    assert detail["state"] == "succeeded"
    [delivery] = detail["deliveries"]
    assert delivery["state"] == "failed" and "404" in delivery["log"][0]["error"]
    assert "no such library" in delivery["log"][0]["error"]
    notifier = state.runner.notifier
    notifier.settings = replace(notifier.settings, audiobookshelf_library="lib_1")  # the operator fixed it
    retried = client.post(f"/jobs/{job['id']}/deliveries/retry")
    assert retried.status_code == 200 and retried.get_json()["deliveries"][0]["state"] == "pending"
    assert state.runner.notifier.run_due() == 1
    assert len(audiobookshelf.uploads) == 1
    assert client.get(f"/jobs/{job['id']}").get_json()["deliveries"][0]["state"] == "delivered"


def test_audiobookshelf_requests_that_cannot_be_done_are_400(make_app: Any, tmp_path: Path) -> None:
    client = make_app(FakeEngine).test_client()
    answer = upload(client, make_epub(tmp_path / "b.epub"), audiobookshelf="true")
    assert answer.status_code == 400 and "no Audiobookshelf configured" in answer.get_json()["error"]["message"]
    assert client.post("/jobs", json={"text": "Hi.", "audiobookshelf": "yes"}).status_code == 400
    with pytest.raises(ConfigError, match="needs all of"):
        ServerConfig(audiobookshelf_url="http://abs.example")


def test_the_outbox_survives_a_process_that_dies_before_sending(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = JobStore(url)
    job = new_job(store, receiver.url)
    end(store, job.id)  # the job ended, and this process died before its notifier ran
    store.db.dispose()
    again = JobStore(url)
    assert Notifier(again, LOOP, tmp_path).run_due() == 1
    assert len(receiver.requests) == 1 and io.BytesIO(receiver.requests[0]["body"]).read()


def test_the_book_command_notifies_and_the_keys_command_prints_the_secret(
    tiny_model_dir: Path, tmp_path: Path, receiver: Receiver
) -> None:
    from click.testing import CliRunner

    from barkserve.cli import main

    text = tmp_path / "b.txt"
    text.write_text("Chapter 1\nHello there.\n\nChapter 2\nGood bye.", encoding="utf-8")
    folders = ["--model", str(tiny_model_dir), "--offline", "--jobs-dir", str(tmp_path / "jobs")]
    cmd = ["book", str(text), "-o", str(tmp_path / "b.wav"), "--notify", receiver.url + "/book", *folders]
    result = CliRunner().invoke(main, [*cmd, "--max-duration", "0.2"])
    assert result.exit_code == 0, result.output
    assert "notified: webhook (job.succeeded)" in result.output
    secret = CliRunner().invoke(main, ["keys", "webhook-secret", "--jobs-dir", str(tmp_path / "jobs")])
    assert secret.exit_code == 0, secret.output
    [sent] = receiver.requests
    payload = Webhook(secret.output.strip()).verify(sent["body"], {k.lower(): v for k, v in sent["headers"].items()})
    assert payload["type"] == "job.succeeded" and payload["data"]["book"]["output"] == "single"
    unknown = CliRunner().invoke(main, ["keys", "webhook-secret", "nobody", "--jobs-dir", str(tmp_path / "jobs")])
    assert unknown.exit_code == 1 and "no active key named 'nobody'" in unknown.output
    bad = CliRunner().invoke(main, [*cmd[: -len(folders)], "--notify", "ftp://x", *folders])
    assert bad.exit_code != 0 and "http:// or https://" in bad.output
