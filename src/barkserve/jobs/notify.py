"""Telling the world that a job ended: signed webhooks and Audiobookshelf uploads, sent from an outbox.

Ending a job (`JobStore.finish`, `JobStore.cancel`) writes its notifications into the `job_deliveries`
table in the same transaction, so none is lost when a process dies. A `Notifier` thread, beside the job
runner and never in its way, sends what is due, logs every attempt on the delivery and retries with
backoff (`BACKOFF_SEC`) until `max_attempts`; then the delivery is `failed`, and
`POST /jobs/<id>/deliveries/retry` sends it again.

Webhooks follow the Standard Webhooks layout (https://www.standardwebhooks.com): headers `webhook-id`
(the delivery's id, the same on every attempt), `webhook-timestamp` (Unix seconds) and
`webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, keyed with the secret's
bytes). Each API key has its own secret, `whsec_` + base64, derived from the server's
(`webhook_secret`, or a random one kept in the database) so that no secret is stored per key; a key
reads it at `GET /webhooks/secret`.

A webhook must point at a public address: the URL is checked when the job is submitted and its host
resolved again before every attempt (a name that comes to resolve to a private address is refused
then), redirects are not followed, and only `webhook_allow_networks` opens private ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError

from barkserve.config import NotifySettings
from barkserve.db import utcnow
from barkserve.errors import DeliveryFailed, InvalidRequest
from barkserve.jobs.files import JobFiles
from barkserve.jobs.store import Delivery, JobStore, ServerSecret

log = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
# Seconds before attempt 2, 3, ...: then hourly. With the default 8 attempts a webhook is tried for ~3.5 h.
BACKOFF_SEC = (5, 30, 120, 600, 1800, 3600)
POLL_SEC = 1.0
LEASE_SEC = 300.0  # a delivery being sent is not taken by another process for this long
UPLOAD_TIMEOUT_SEC = 600.0  # an .m4b of hours of speech takes a while to send
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Every address: the operator's own command line (`barkserve book --notify`) may notify any of them.
ANY_ADDRESS: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal address: itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def refused_address(address: str, allow: Sequence[Network]) -> bool:
    """Whether a webhook may not reach `address`: not a global one, unless inside an allowed network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allow):
        return False
    return not ip.is_global or ip.is_multicast


def check_webhook_url(url: object, allow: Sequence[Network] = (), resolver: Resolver = resolve) -> str:
    """A webhook URL a job may be given: http(s), a host, no credentials, a public address.

    Raises:
        InvalidRequest: what is wrong with it, and how to fix it.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(f"webhook must be an http(s) URL string; got {url!r}")
    if len(url) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidRequest(f"webhook must be a URL of at most {MAX_URL_CHARS} characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a bad port, or brackets that are not an IPv6 address
        raise InvalidRequest(f"webhook is not a valid URL ({exc}); give one like https://example.com/hook") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"webhook must start with http:// or https://; got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise InvalidRequest("webhook has no host; give one like https://example.com/hook")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("webhook must not carry user:password@; verify deliveries by their signature instead")
    try:
        addresses = resolver(parts.hostname, port)
    except (OSError, UnicodeError) as exc:
        raise InvalidRequest(f"webhook host {parts.hostname!r} does not resolve ({exc})") from exc
    refused = [a for a in addresses if refused_address(a, allow)]
    if refused or not addresses:
        raise InvalidRequest(
            f"webhook host {parts.hostname!r} resolves to {', '.join(refused) or 'nothing'}, a private, loopback "
            "or reserved address; webhooks go to public addresses unless the server's webhook_allow_networks "
            "lists the network"
        )
    return url


class Signer:
    """Each tenant's webhook secret, derived from the server's, and the Standard Webhooks signature."""

    def __init__(self, master: bytes) -> None:
        self.master = master

    @classmethod
    def for_store(cls, store: JobStore, configured: str = "") -> Signer:
        """The signer of `configured` (a setting), else of the random secret kept in `store`'s database."""
        if configured:
            return cls(configured.encode())
        with store.session() as session:
            row = session.get(ServerSecret, "webhook")
            if row is not None:
                return cls(row.value.encode())
        try:
            with store.session() as session:
                session.add(ServerSecret(name="webhook", value=secrets.token_urlsafe(48)))
        except IntegrityError:  # another process made it first: use theirs
            pass
        with store.session() as session:
            row = session.get(ServerSecret, "webhook")
            assert row is not None
            return cls(row.value.encode())

    def secret(self, tenant: str | None) -> str:
        """The `whsec_...` secret of an API key's id (None: jobs made with keys off)."""
        raw = hmac.new(self.master, f"barkserve-webhook:{tenant or '-'}".encode(), hashlib.sha256).digest()
        return "whsec_" + base64.b64encode(raw).decode()

    def headers(self, tenant: str | None, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers of one delivery attempt."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        key = base64.b64decode(self.secret(tenant).removeprefix("whsec_"))
        signed = f"{msg_id}.{stamp}.".encode() + body
        signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{signature}",
            "content-type": "application/json",
            "user-agent": "barkserve-webhooks",
        }


class Notifier:
    """Sends due notifications from the store, one thread per process (`start`), or on call (`run_due`)."""

    def __init__(
        self,
        store: JobStore,
        settings: NotifySettings,
        jobs_dir: Path,
        resolver: Resolver = resolve,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store, self.settings, self.jobs_dir = store, settings, Path(jobs_dir)
        self.resolver, self.clock = resolver, clock
        self.signer = Signer.for_store(store, settings.webhook_secret)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="job-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.run_due():
                    self._stop.wait(POLL_SEC)
            except Exception:  # a database hiccup must not end notifications for good
                log.exception("job notifier iteration failed")
                self._stop.wait(POLL_SEC)

    def run_due(self) -> int:
        """Send every due notification once; how many were tried."""
        now = self.clock()
        due = self.store.claim_deliveries(now, LEASE_SEC)
        for delivery in due:
            self.attempt(delivery)
        return len(due)

    def attempt(self, delivery: Delivery) -> bool:
        """Try one delivery once and record the attempt; True when it was delivered."""
        started = time.perf_counter()
        entry: dict[str, Any] = {"at": self.clock().isoformat() + "Z", "attempt": delivery.attempts + 1}
        try:
            send = self.send_webhook if delivery.kind == "webhook" else self.upload_audiobookshelf
            entry["status"] = send(delivery)
            ok, final = True, False
        except DeliveryFailed as exc:
            entry.update(status=exc.status, error=str(exc))
            ok, final = False, exc.final
        except Exception as exc:  # a bug must not stop the other deliveries
            log.exception("delivery %s of job %s", delivery.id, delivery.job_id)
            entry.update(status=None, error=f"{type(exc).__name__}: {exc}")
            ok, final = False, False
        entry["ms"] = round((time.perf_counter() - started) * 1000)
        attempts = delivery.attempts + 1
        next_at = None
        if not ok and not final and attempts < self.settings.max_attempts:
            next_at = self.clock() + dt.timedelta(seconds=BACKOFF_SEC[min(attempts - 1, len(BACKOFF_SEC) - 1)])
        log.log(
            logging.INFO if ok else logging.WARNING,
            "job %s %s %s attempt %d: %s",
            delivery.job_id,
            delivery.kind,
            delivery.event,
            attempts,
            "delivered" if ok else f"{entry.get('error')} ({'retry at ' + str(next_at) if next_at else 'gave up'})",
        )
        self.store.record_attempt(delivery.id, entry, next_at, ok)
        return ok

    def send_webhook(self, delivery: Delivery) -> int:
        """POST the signed payload; the answer's status when it is 2xx."""
        import requests

        parts = urlsplit(delivery.url)
        try:
            addresses = self.resolver(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as exc:
            raise DeliveryFailed(f"the host does not resolve: {exc}") from exc
        refused = [a for a in addresses if refused_address(a, self.settings.allow_networks)]
        if refused or not addresses:
            raise DeliveryFailed(f"the host now resolves to a refused address ({', '.join(refused)})", final=True)
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = self.signer.headers(delivery.tenant, delivery.id, body)
        try:
            answer = requests.post(
                delivery.url, data=body, headers=headers, timeout=self.settings.timeout_sec, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= answer.status_code < 300:
            return answer.status_code
        # 410 Gone: the receiver asks not to be called again (Standard Webhooks' advice).
        final = answer.status_code == 410
        raise DeliveryFailed(f"the receiver answered {answer.status_code}", answer.status_code, final)

    def upload_audiobookshelf(self, delivery: Delivery) -> int:
        """Upload the job's .m4b to the Audiobookshelf server (POST /api/upload, multipart)."""
        import requests

        s = self.settings
        if not s.audiobookshelf_url:
            raise DeliveryFailed("this server has no Audiobookshelf configured (audiobookshelf_url)")
        book = self.store.book(delivery.job_id)
        path = JobFiles(self.jobs_dir, delivery.job_id).book("m4b")
        if book is None or not path.is_file():
            raise DeliveryFailed("the job has no .m4b to upload", final=True)
        title = upload_title(book.title, delivery.job_id)
        form = {"title": title, "author": book.author or "", "library": s.audiobookshelf_library,
                "folder": s.audiobookshelf_folder}  # fmt: skip
        try:
            with path.open("rb") as audio:
                answer = requests.post(
                    f"{s.audiobookshelf_url}/api/upload",
                    headers={"Authorization": f"Bearer {s.audiobookshelf_token}", "user-agent": "barkserve"},
                    data=form,
                    files={"0": (f"{title}.m4b", audio, "audio/mp4")},
                    timeout=(s.timeout_sec, UPLOAD_TIMEOUT_SEC),
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if answer.status_code == 200:
            return 200
        hint = {403: "the token's user may not upload", 404: "no such library or folder id",
                401: "the token is not valid"}.get(answer.status_code, answer.text[:200])  # fmt: skip
        raise DeliveryFailed(f"Audiobookshelf answered {answer.status_code}: {hint}", answer.status_code)


def upload_title(title: str, job_id: str) -> str:
    """A book's title as an Audiobookshelf folder and file name: no path separators or control characters."""
    cleaned = "".join(" " if c in '/\\:*?"<>|' or ord(c) < 32 else c for c in title).strip(" .")
    return cleaned[:200] or f"barkserve job {job_id}"


def check_audiobookshelf(settings: NotifySettings, value: object, output: str | None) -> bool:
    """A job's `audiobookshelf` field: a boolean, true only for an .m4b book on a server that has one.

    Raises:
        InvalidRequest: not a boolean, no Audiobookshelf configured, or not an .m4b book.
    """
    if not isinstance(value, bool):
        raise InvalidRequest(f"audiobookshelf must be true or false; got {value!r}")
    if value and not settings.audiobookshelf_url:
        raise InvalidRequest(
            "this server has no Audiobookshelf configured (audiobookshelf_url, _token, _library, _folder); "
            "leave out audiobookshelf or ask its operator"
        )
    if value and output != "m4b":
        raise InvalidRequest("audiobookshelf uploads an .m4b: upload a book with output 'm4b' (the default)")
    return value
