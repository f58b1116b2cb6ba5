"""API keys in the job database: high-entropy secrets shown once, stored only as SHA-256 hashes.

A key looks like `bk_<16 hex id>_<43 url-safe characters>`: the `bk_` prefix makes a leaked key easy
to recognize (secret scanners), the id finds its row, and the rest (256 random bits) is the secret.
SHA-256 is enough for such a secret: slow password hashes (bcrypt, argon2) defend low-entropy
passwords against guessing, and 2**256 guesses are out of reach at any speed; a fast hash also
keeps checking a key on every request cheap. The stored hash is compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from barkserve.db import Base, Database, utcnow
from barkserve.errors import InvalidRequest, NotFound

SCOPES = ("speak", "clone", "jobs", "lexicon", "admin")
PREFIX = "bk_"
ID_HEX = 16
SECRET_BYTES = 32
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TOKEN = re.compile(rf"{PREFIX}([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
MAX_RATE_PER_MIN = 100_000
MAX_QUOTA_SEC_PER_DAY = 10_000_000
UNITS = {"min": ("min", "minute", "m"), "day": ("day", "d")}


class ApiKeyRow(Base):  # the jobs' metadata: one schema per database, created and migrated together
    __tablename__ = "api_keys"
    # Names are unique among active keys: a revoked key's name can be given to a new key.
    __table_args__ = (
        Index(
            "ux_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_HEX), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the whole key
    scopes: Mapped[str] = mapped_column(String(64))  # comma-separated, from SCOPES
    rate_per_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quota_sec_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class VoiceOwner(Base):
    """Which key cloned a custom voice over HTTP. Voice files without a row are shared (the operator's)."""

    __tablename__ = "voice_owners"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None: made with auth off
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class OutputOwner(Base):
    """Which key made a /synthesize output file; files without a row belong to no key (admins only)."""

    __tablename__ = "output_owners"

    filename: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class KeyLexicon(Base):
    """A key's pronunciation lexicon (PUT /lexicon), as JSON; the tenant "" is the anonymous one (keys off)."""

    __tablename__ = "key_lexicons"

    tenant: Mapped[str] = mapped_column(String(32), primary_key=True)
    lexicon: Mapped[str] = mapped_column(Text)  # barkserve.markup.lexicon's JSON form, checked before it is stored
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


AUTH_TABLES = (ApiKeyRow.__table__, VoiceOwner.__table__, OutputOwner.__table__, KeyLexicon.__table__)


@dataclass(frozen=True)
class ApiKey:
    """A key as the server sees it: never its secret."""

    id: str
    name: str
    scopes: frozenset[str]
    rate_per_min: int | None
    quota_sec_per_day: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKey:
        scopes = frozenset(s for s in row.scopes.split(",") if s)
        return cls(row.id, row.name, scopes, row.rate_per_min, row.quota_sec_per_day, row.created_at, row.revoked_at)

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
        raise InvalidRequest(
            f"a key name is 1-64 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit; got {name!r}"
        )
    return name


def new_secret() -> str:
    """A fresh key: `bk_`, a random 16-hex id, `_`, 256 random bits (43 URL-safe characters)."""
    return f"{PREFIX}{secrets.token_hex(ID_HEX // 2)}_{secrets.token_urlsafe(SECRET_BYTES)}"


def check_secret(secret: str) -> str:
    """`secret` if it has a key's exact form; else a clear error that says how to make one."""
    secret = secret.strip()
    if TOKEN.fullmatch(secret) is None:
        raise InvalidRequest(
            f"a key is {PREFIX}<{ID_HEX} hex digits>_<43 characters of A-Z a-z 0-9 _ ->; make one with "
            "`barkserve keys new-secret` (the given value does not have that form)"
        )
    return secret


def parse_scopes(text: str | Sequence[str]) -> frozenset[str]:
    """`speak,clone` -> {'speak', 'clone'}; an unknown or empty list is an error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise InvalidRequest(f"scopes are a comma-separated list of {', '.join(SCOPES)}; got {text!r}")
    return scopes


def parse_limit(text: str | int | None, unit: str, maximum: int, what: str) -> int | None:
    """`30/min` or `30` (rate), `3600/day` or `3600` (quota) -> 30 / 3600; None or 'none' -> no limit."""
    if text is None:
        return None
    raw = str(text).strip()
    if raw.lower() in ("none", "unlimited"):
        return None
    number, _, per = raw.partition("/")
    number = number.strip()
    if per and per.strip().lower() not in UNITS[unit]:
        raise InvalidRequest(f"{what} is counted per {unit}: write N or N/{unit}; got {raw[:40]!r}")
    if not (number.isascii() and number.isdigit()) or len(number) > 12 or not 1 <= int(number) <= maximum:
        raise InvalidRequest(f"{what} must be a whole number from 1 to {maximum} per {unit}; got {raw[:40]!r}")
    return int(number)


class KeyStore(Database):
    """Every read and write of API keys and of the tenancy records; each method is one short transaction."""

    def __init__(self, url_or_db: str | Any) -> None:
        super().__init__(url_or_db)
        self._ever = False  # a key was seen: keys never disappear (revoked ones stay), so it stays True

    def create(
        self,
        name: str,
        scopes: frozenset[str] | str,
        rate_per_min: int | None = None,
        quota: int | None = None,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside the caller).

        `secret`: register a key the operator made beforehand with `new_secret` (e.g. kept in a
        Kubernetes Secret), instead of making one here; it must have a key's exact form.
        """
        name = check_name(name)
        scope_set = parse_scopes(scopes) if isinstance(scopes, str) else parse_scopes(sorted(scopes))
        rate_per_min = parse_limit(rate_per_min, "min", MAX_RATE_PER_MIN, "rate")
        quota = parse_limit(quota, "day", MAX_QUOTA_SEC_PER_DAY, "quota")
        token = new_secret() if secret is None else check_secret(secret)
        key_id = token[len(PREFIX) : len(PREFIX) + ID_HEX]
        with self.session() as session:
            if session.get(ApiKeyRow, key_id) is not None:
                raise InvalidRequest(
                    "a key with this secret's id already exists (revoked keys included): make a new secret "
                    "with `barkserve keys new-secret`"
                )
        row = ApiKeyRow(
            id=key_id,
            name=name,
            secret_hash=hash_secret(token),
            scopes=",".join(s for s in SCOPES if s in scope_set),
            rate_per_min=rate_per_min,
            quota_sec_per_day=quota,
            created_at=utcnow(),
        )
        try:
            with self.session() as session:
                session.add(row)
        except IntegrityError as exc:
            raise InvalidRequest(f"an active key is named {name!r}; revoke it first or choose another name") from exc
        return ApiKey.of(row), token

    def list_keys(self, include_revoked: bool = True) -> list[ApiKey]:
        with self.session() as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.name)
            if not include_revoked:
                query = query.where(ApiKeyRow.revoked_at.is_(None))
            return [ApiKey.of(row) for row in session.scalars(query)]

    def revoke(self, name: str) -> ApiKey:
        """Revoke the active key named `name`; it fails its next request."""
        with self.session() as session:
            row = session.scalars(
                select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
            ).first()
            if row is None:
                raise NotFound(f"no active key named {name!r}; `barkserve keys list` shows them")
            row.revoked_at = utcnow()
            return ApiKey.of(row)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key whose secret is `token`; None for a malformed, unknown, wrong or revoked one."""
        match = TOKEN.fullmatch(token)
        if match is None:
            return None
        with self.session() as session:
            row = session.get(ApiKeyRow, match.group(1))
        digest = hash_secret(token)
        if row is None or not hmac.compare_digest(digest, row.secret_hash) or row.revoked_at is not None:
            return None
        return ApiKey.of(row)

    def get(self, key_id: str) -> ApiKey | None:
        with self.session() as session:
            row = session.get(ApiKeyRow, key_id)
        return None if row is None else ApiKey.of(row)

    def any_created(self) -> bool:
        """Whether a key was ever created here (revoked ones count: revoking the last key locks, not opens)."""
        if not self._ever:
            with self.session() as session:
                self._ever = session.scalar(select(ApiKeyRow.id).limit(1)) is not None
        return self._ever

    def active_count(self) -> int:
        return len(self.list_keys(include_revoked=False))

    # Tenancy records: who made a custom voice or an output file.

    def claim_voice(self, name: str, tenant: str | None) -> bool:
        """Record `tenant` as the maker of voice `name`; False if the name is recorded already."""
        try:
            with self.session() as session:
                session.add(VoiceOwner(name=name, tenant=tenant, created_at=utcnow()))
        except IntegrityError:
            return False
        return True

    def forget_voice(self, name: str, claimed_before: dt.datetime | None = None) -> bool:
        """Drop the record of voice `name` (only if made before `claimed_before`, when given); True if dropped."""
        with self.session() as session:
            query = session.query(VoiceOwner).filter(VoiceOwner.name == name)
            if claimed_before is not None:
                query = query.filter(VoiceOwner.created_at < claimed_before)
            return query.delete() > 0

    def voice_owner(self, name: str) -> tuple[bool, str | None]:
        """(recorded, tenant) of voice `name`; (False, None) for a shared voice or none at all."""
        with self.session() as session:
            row = session.get(VoiceOwner, name)
        return (False, None) if row is None else (True, row.tenant)

    def voice_owners(self) -> dict[str, str | None]:
        with self.session() as session:
            return {row.name: row.tenant for row in session.scalars(select(VoiceOwner))}

    def claim_file(self, filename: str, tenant: str, keep_hours: float) -> None:
        """Record `tenant` as the maker of output file `filename`; drop records older than `keep_hours`."""
        cutoff = utcnow() - dt.timedelta(hours=keep_hours)
        with self.session() as session:
            session.add(OutputOwner(filename=filename, tenant=tenant, created_at=utcnow()))
            session.execute(
                OutputOwner.__table__.delete().where(OutputOwner.created_at < cutoff)  # type: ignore[attr-defined]
            )

    def file_owner(self, filename: str) -> str | None:
        with self.session() as session:
            row = session.get(OutputOwner, filename)
        return None if row is None else row.tenant

    # Pronunciation lexicons, one per tenant.

    def lexicon(self, tenant: str | None) -> dict[str, Any] | None:
        """The lexicon `tenant` stored (its JSON form), or None."""
        with self.session() as session:
            row = session.get(KeyLexicon, tenant or "")
        return None if row is None else dict(json.loads(row.lexicon))

    def set_lexicon(self, tenant: str | None, lexicon: dict[str, Any]) -> None:
        """Store `tenant`'s lexicon (already checked), replacing the one before."""
        data = json.dumps(lexicon, ensure_ascii=False, sort_keys=True)
        with self.session() as session:
            row = session.get(KeyLexicon, tenant or "")
            if row is None:
                session.add(KeyLexicon(tenant=tenant or "", lexicon=data, updated_at=utcnow()))
            else:
                row.lexicon, row.updated_at = data, utcnow()

    def delete_lexicon(self, tenant: str | None) -> bool:
        """Drop `tenant`'s lexicon; True if there was one."""
        with self.session() as session:
            return session.query(KeyLexicon).filter(KeyLexicon.tenant == (tenant or "")).delete() > 0
