"""Who may do what: API keys, scopes, tenancy and limits at the HTTP edge.

Every request that reaches a route passes `Access.check` (after the Host/Origin guards):

1. a public route (`/health`, the web page, the API description; `/metrics` unless `public_metrics`
   is off) goes through; so does every route while keys are not enforced (one anonymous tenant);
2. otherwise the `Authorization: Bearer <key>` must name an active key (401), with the scope of the
   route (403), within its requests per minute (429);
3. new synthesis must fit the key's audio seconds per day (429) and the engine's queue bound (503);
4. a route whose path names a job, output file, stream or voice answers 404 unless the key made
   it (an admin key sees everything); custom voices of other keys are hidden from lists and use.

Keys are enforced when `auth` is "on", or it is "auto" and the server listens on a non-loopback
address or any key was ever created. The key is read from the database on every request, so a
revoked key fails its next request.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, request

from barkserve.auth.keys import ApiKey, KeyStore
from barkserve.auth.limiter import UsageLimiter
from barkserve.config import ServerConfig
from barkserve.errors import (
    ConfigError,
    Forbidden,
    NotFound,
    Overloaded,
    RateLimited,
    Unauthorized,
    VoiceExists,
    VoiceProtected,
)
from barkserve.jobs.store import utcnow
from barkserve.server import metrics as app_metrics
from barkserve.server.state import AppState
from barkserve.voices import VOICE_FILTER, is_safe_name, without_files

log = logging.getLogger(__name__)
EXTENSION = "barkserve.access"
PUBLIC = "public"  # no key needed
ANY_KEY = "any"  # any valid key, whatever its scopes
# The scope each endpoint needs. An endpoint missing here needs an admin key (tests/server/test_access.py
# fails on one), so a new route is closed until someone decides who may use it.
ENDPOINT_SCOPES = {
    "meta.health": PUBLIC,
    "ops.openapi_document": PUBLIC,
    "ops.docs": PUBLIC,
    "ops.metrics": PUBLIC,  # "admin" when public_metrics is off
    "web.index": PUBLIC,
    "web.static": PUBLIC,
    "static": PUBLIC,
    "meta.models": ANY_KEY,
    "openai.models": ANY_KEY,
    "voices.list_voices": ANY_KEY,
    "openai.voices": ANY_KEY,
    "synthesize.synthesize": "speak",
    "synthesize.audio": "speak",
    "openai.speech": "speak",
    "openai.speech_progress": "speak",
    "openai.speech_batch": "speak",
    "voices.voice_preview": "speak",  # generates a short sample once, then serves it from disk
    "openai.speech_dry_run": "speak",  # plans as /v1/audio/speech does; generates nothing
    "lexicon.get_lexicon": "lexicon",
    "lexicon.put_lexicon": "lexicon",
    "lexicon.delete_lexicon": "lexicon",
    "voices.create_voice": "clone",
    "voices.delete_voice": "clone",
    "jobs.create_job": "jobs",
    "jobs.list_jobs": "jobs",
    "jobs.get_job": "jobs",
    "jobs.get_chunks": "jobs",
    "jobs.get_audio": "jobs",
    "jobs.get_captions": "jobs",
    "jobs.cancel_job": "jobs",
    "jobs.retry_deliveries": "jobs",
    "jobs.webhook_secret": "jobs",
    "jobs.plan_book": "jobs",  # reads the book as POST /jobs does; starts no synthesis
}
# Endpoints that start new synthesis: they count against the audio quota and the queue bound.
SYNTHESIS_ENDPOINTS = frozenset({"synthesize.synthesize", "openai.speech", "openai.speech_batch", "jobs.create_job"})
QUEUE_RETRY_AFTER_SEC = 5.0
# A voice's owner is recorded just before its file is written (milliseconds); a record without a file
# older than this was left by a process that died in between.
STALE_CLAIM_SEC = 60.0
KEEP_STREAM_OWNERS = 1000
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an API key, or no one (keys not enforced: the one anonymous tenant)."""

    key: ApiKey | None

    @property
    def tenant(self) -> str | None:
        """The id its jobs, files and voices are recorded under (None: anonymous)."""
        return None if self.key is None else self.key.id

    @property
    def sees_all(self) -> bool:
        """Anonymous requests (keys off) and admin keys see every tenant's resources."""
        return self.key is None or "admin" in self.key.scopes

    @property
    def tenant_filter(self) -> str | None:
        """The tenant to narrow lists and lookups to; None: no narrowing."""
        return None if self.sees_all else self.tenant


ANONYMOUS = Principal(None)


def required_scope(endpoint: str | None, config: ServerConfig) -> str:
    """The scope an endpoint needs (PUBLIC, ANY_KEY or a scope name); unknown endpoints need admin."""
    if endpoint == "ops.metrics" and not config.public_metrics:
        return "admin"
    return ENDPOINT_SCOPES.get(endpoint or "", "admin")


def is_loopback(host: str) -> bool:
    """Whether listening on `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def current() -> Principal:
    """The principal of the current request (anonymous outside one, or on a public route)."""
    found: Principal = g.get("barkserve_principal", ANONYMOUS)
    return found


class Access:
    """The app's key store, limiter and policy; `check` runs before every request."""

    def __init__(self, config: ServerConfig, app_state: AppState, keys: KeyStore, limiter: UsageLimiter) -> None:
        self.config, self.app_state, self.keys, self.limiter = config, app_state, keys, limiter
        self.loopback = is_loopback(config.host)
        self.metrics: app_metrics.Metrics | None = None  # counts job audio (set by init_app)
        self._streams: OrderedDict[str, str | None] = OrderedDict()  # speech request id -> tenant
        self._lock = threading.Lock()
        self._admission = threading.Lock()
        self._admitted = 0  # synthesis requests admitted and not yet ended (check_capacity)

    def check_startup(self) -> None:
        """Refuse to start where keys are required and none is active."""
        required = self.config.auth == "on" or (self.config.auth == "auto" and not self.loopback)
        if required and self.keys.active_count() == 0:
            where = f"listens on {self.config.host}" if not self.loopback else "has auth=on"
            raise ConfigError(
                f"barkserve {where} but has no active API key, so no one could use it (or anyone could, "
                f"without keys). Create one first, with the same --database-url / --jobs-dir as the server: "
                f"`barkserve keys create --name admin --scopes admin`; or opt out explicitly with --auth off "
                f"(BARKSERVE_AUTH=off) when a gateway in front authenticates every request"
            )

    def enforced(self) -> bool:
        if self.config.auth != "auto":
            return self.config.auth == "on"
        return not self.loopback or self.keys.any_created()

    def scope_of(self, endpoint: str | None) -> str:
        return required_scope(endpoint, self.config)

    def check(self) -> None:
        """Authenticate, authorize and limit the current request (raises the 401/403/404/429/503)."""
        if request.url_rule is None or request.method == "OPTIONS":
            return  # 404 and 405 answer as they are; OPTIONS only lists methods
        endpoint = request.endpoint
        scope = self.scope_of(endpoint)
        if scope == PUBLIC:
            return
        principal = Principal(self.authenticate(scope)) if self.enforced() else ANONYMOUS
        g.barkserve_principal = principal
        key = principal.key
        if key is not None:
            wait = self.limiter.hit_request(key.id, key.rate_per_min)
            if wait is not None:
                raise RateLimited(
                    f"key {key.name!r} is over its {key.rate_per_min} requests per minute; retry in {wait:.0f} s",
                    wait,
                )
        if endpoint in SYNTHESIS_ENDPOINTS:
            self.check_capacity(key)
        if not principal.sees_all:
            g.barkserve_voice_token = VOICE_FILTER.set(self.voice_filter(principal.tenant))
            self.check_owned(endpoint or "", principal.tenant, request.view_args or {})

    def authenticate(self, scope: str) -> ApiKey:
        """The request's active key with `scope` (401 without a valid key, 403 without the scope)."""
        header = request.headers.get("Authorization")
        if header is None:
            raise Unauthorized(
                "this server needs an API key: send the header 'Authorization: Bearer <key>' (OpenAI's client: "
                "api_key=<key>). The operator creates keys with `barkserve keys create`"
            )
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <key>', the key as `keys create` printed it")
        key = self.keys.authenticate(token.strip())
        if key is None:
            raise Unauthorized("invalid API key: it is wrong, revoked or not a barkserve key; ask the operator for one")
        g.barkserve_key = key  # the access log and the per-key metrics name it from here on
        if scope != ANY_KEY and not key.allows(scope):
            have = ", ".join(sorted(key.scopes))
            raise Forbidden(
                f"this key's scopes ({have}) do not include '{scope}', which {request.method} {request.url_rule} "
                f"needs; ask the operator for a key with it",
                scope,
            )
        return key

    def check_capacity(self, key: ApiKey | None) -> None:
        """New synthesis: the key's audio quota (429), then the engine's queue bound (503)."""
        if key is not None:
            wait = self.limiter.audio_wait(key.id, key.quota_sec_per_day)
            if wait is not None:
                raise RateLimited(
                    f"key {key.name!r} used its {key.quota_sec_per_day} audio seconds for today; retry in {wait:.0f} s",
                    wait,
                )
        bound = self.config.max_queue_depth
        if not bound:
            return
        # Check and count in one step: requests arriving together cannot all pass on the same count.
        # An admitted request counts until it ends (its chunks may not be queued yet when the next one
        # is checked); its queued chunks count too, so the bound errs on the safe side.
        with self._admission:
            waiting = self.app_state.synthesizer.queued() + self._admitted
            if waiting > bound:
                raise Overloaded(
                    f"the server is busy: {waiting} chunks and requests wait for the engine (max_queue_depth "
                    f"{bound}); retry shortly",
                    QUEUE_RETRY_AFTER_SEC,
                )
            self._admitted += 1
        g.barkserve_admitted = True

    def release_admission(self, _exc: BaseException | None = None) -> None:
        """The request ends: it no longer counts against the queue bound."""
        if g.pop("barkserve_admitted", False):
            with self._admission:
                self._admitted -= 1

    def voice_filter(self, tenant: str | None) -> Callable[[str], bool]:
        """Shared voices (no owner record) and the tenant's own; the records are read once per request."""
        owners: dict[str, str | None] | None = None

        def visible(name: str) -> bool:
            nonlocal owners
            if owners is None:
                owners = self.keys.voice_owners()
            return name not in owners or owners[name] == tenant

        return visible

    def check_owned(self, endpoint: str, tenant: str | None, args: dict[str, Any]) -> None:
        """A 404 for a path that names another tenant's job, output file or stream; 403 for a shared voice."""
        check = OWNED_PATHS.get(endpoint)
        if check is not None:
            check(self, tenant, args)

    def own_job(self, tenant: str | None, args: dict[str, Any]) -> None:
        self.app_state.jobs.get(args["job_id"], tenant=tenant)  # NotFound unless it is the tenant's

    def own_file(self, tenant: str | None, args: dict[str, Any]) -> None:
        name = args["filename"]
        if tenant is None or self.keys.file_owner(name) != tenant:
            raise NotFound(f"no audio file named {name!r}; use the 'filename' a synthesis returned")

    def own_stream(self, tenant: str | None, args: dict[str, Any]) -> None:
        with self._lock:
            owner = self._streams.get(args["sid"], "")
        if owner != tenant:
            raise NotFound(f"no recent speech request with id {args['sid']!r}")

    def own_voice(self, tenant: str | None, args: dict[str, Any]) -> None:
        name = args["name"]
        recorded, owner = self.keys.voice_owner(name)
        if recorded and owner != tenant:
            raise NotFound(f"no custom voice named {name!r}; GET /voices lists them")
        if not recorded and is_safe_name(name) and (self.config.voices_dir / f"{name}.npz").is_file():
            raise VoiceProtected(f"{name!r} is a shared voice of this server; only an admin key can delete it")

    def see_voice(self, tenant: str | None, args: dict[str, Any]) -> None:
        """A 404 for another tenant's voice; shared voices and presets are everyone's to hear."""
        name = args["name"]
        recorded, owner = self.keys.voice_owner(name)
        if recorded and owner != tenant:
            raise NotFound(f"no voice named {name!r}; GET /voices lists them")

    def record_stream(self, sid: str, key_id: str) -> None:
        """Remember which key started speech stream `sid` (the most recent KEEP_STREAM_OWNERS)."""
        with self._lock:
            self._streams[sid] = key_id
            while len(self._streams) > KEEP_STREAM_OWNERS:
                self._streams.popitem(last=False)

    def forget_stale_voice(self, name: str) -> bool:
        """Drop the record of voice `name` if it has no file and is older than any write of one takes."""
        if (self.config.voices_dir / f"{name}.npz").is_file():
            return False
        return self.keys.forget_voice(name, claimed_before=utcnow() - dt.timedelta(seconds=STALE_CLAIM_SEC))

    def reconcile_voices(self) -> list[str]:
        """Drop the stale records of voices without a file (left by a crash); returns their names."""
        names = without_files(self.keys.voice_owners(), self.config.voices_dir)
        dropped = [name for name in names if self.forget_stale_voice(name)]
        if dropped:
            log.warning("dropped the owner records of %d voice(s) without a file: %s", len(dropped), dropped)
        return dropped

    def charge_audio(self, key_id: str, seconds: float) -> None:
        """Count audio made for a key against its daily quota (its limits read afresh)."""
        key = self.keys.get(key_id)
        if key is not None:
            self.limiter.charge_audio(key.id, key.quota_sec_per_day, seconds)

    def job_chunk_done(self, job_id: str, audio_sec: float, generation_sec: float) -> None:
        """A job's chunk is done: count its audio in the metrics and against its key's quota."""
        tenant = self.app_state.jobs.get(job_id).tenant
        key = self.keys.get(tenant) if tenant else None
        if self.metrics is not None:
            self.metrics.record_job_audio(key.name if key else None, audio_sec, generation_sec)
        if key is not None:
            self.limiter.charge_audio(key.id, key.quota_sec_per_day, audio_sec)


# What a path that names a resource must belong to, by endpoint; tests/server/test_access.py checks
# that every route with a path argument is here or in NOT_OWNED.
OWNED_PATHS: dict[str, Callable[[Access, str | None, dict[str, Any]], None]] = {
    "synthesize.audio": Access.own_file,
    "openai.speech_progress": Access.own_stream,
    "voices.delete_voice": Access.own_voice,
    "voices.voice_preview": Access.see_voice,
    "jobs.get_job": Access.own_job,
    "jobs.get_chunks": Access.own_job,
    "jobs.get_audio": Access.own_job,
    "jobs.get_captions": Access.own_job,
    "jobs.cancel_job": Access.own_job,
    "jobs.retry_deliveries": Access.own_job,
}
NOT_OWNED = frozenset({"web.static", "static"})  # package files, the same for everyone


def access() -> Access:
    """The current app's `Access`."""
    found: Access = current_app.extensions[EXTENSION]
    return found


@contextmanager
def voice_claim(name: str) -> Iterator[None]:
    """Record the current tenant as the maker of voice `name` while its file is written (dropped on failure).

    `Cloner.clone` enters this around writing the file only: recording first reserves the name, so two
    keys cloning one name cannot both win, and a process killed while cloning leaves no record. A
    record without a file that is older than STALE_CLAIM_SEC was left by a process that died between
    the two steps (or by an older version, which recorded before cloning): it is dropped here.
    """
    found = access()
    tenant = current().tenant
    if not found.keys.claim_voice(name, tenant):
        file_exists = (found.config.voices_dir / f"{name}.npz").exists()
        if file_exists or not found.forget_stale_voice(name) or not found.keys.claim_voice(name, tenant):
            raise VoiceExists(f"a custom voice named {name!r} exists; delete it first or choose another name")
    try:
        yield
    except BaseException:
        found.keys.forget_voice(name)
        raise


def claim_outputs(*filenames: str | None) -> None:
    """Record the current key as the maker of these output files; the views call it where they make
    them, before the client can learn their names (no key: they belong to no key)."""
    key = current().key
    if key is None:
        return
    found = access()
    for filename in filter(None, filenames):
        found.keys.claim_file(filename, key.id, found.config.output_retention_hours)


def claim_stream(sid: str, captions_file: str | None = None) -> None:
    """Record the current key as the maker of speech stream `sid` and of its caption file (written when
    the stream ends; its name is known now)."""
    key = current().key
    if key is None:
        return
    claim_outputs(captions_file)
    access().record_stream(sid, key.id)


def forget_voice(name: str) -> None:
    """Drop the owner record of a deleted voice."""
    access().keys.forget_voice(name)


def init_app(app: Flask, config: ServerConfig, app_state: AppState) -> Access:
    """Create the app's key store and limiter, refuse to start without a needed key, hook every request."""
    keys = KeyStore(app_state.jobs.db)
    found = Access(config, app_state, keys, UsageLimiter(config.limits_storage))
    found.check_startup()
    found.reconcile_voices()
    app.extensions[EXTENSION] = found
    metrics = app.extensions.get(app_metrics.EXTENSION)
    if metrics is not None:
        metrics.charge = found.charge_audio
        found.metrics = metrics
    app_state.jobs.on_chunk_done = found.job_chunk_done
    app.before_request(found.check)
    app.teardown_request(_reset_voice_filter)
    app.teardown_request(found.release_admission)
    return found


def _reset_voice_filter(_exc: BaseException | None) -> None:
    token = g.pop("barkserve_voice_token", None)
    if token is not None:
        VOICE_FILTER.reset(token)
