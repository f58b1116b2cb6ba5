"""The key store: secrets shown once and stored as hashes, scopes, limits, revocation; old databases open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from barkserve.auth.keys import AUTH_TABLES, KeyStore, parse_limit
from barkserve.db import Base, make_db_engine
from barkserve.errors import InvalidRequest, NotFound
from barkserve.jobs.store import Job, JobStore
from support import missing


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    if request.param == "sqlite":
        yield KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
        return
    url = os.environ.get("BARKSERVE_TEST_DATABASE_URL", "")
    if not url:
        missing("set BARKSERVE_TEST_DATABASE_URL to test on PostgreSQL (.ci/postgres.sh starts one)")
    engine = make_db_engine(url)
    Base.metadata.drop_all(engine, tables=list(AUTH_TABLES))
    store = KeyStore(url)
    yield store
    # The job tests share this database: a key left here would turn keys on for their apps.
    Base.metadata.drop_all(engine, tables=list(AUTH_TABLES))
    engine.dispose()
    store.db.dispose()


def test_a_key_authenticates_until_it_is_revoked(store: KeyStore) -> None:
    key, secret = store.create("alice", "speak,jobs", rate_per_min="30/min", quota="3600/day")
    assert secret.startswith("bk_") and len(secret) > 50
    found = store.authenticate(secret)
    assert found is not None and found.id == key.id and found.name == "alice"
    assert found.scopes == {"speak", "jobs"} and (found.rate_per_min, found.quota_sec_per_day) == (30, 3600)
    assert found.allows("speak") and not found.allows("clone")
    wrong_secret = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    unknown_id = "bk_" + "0" * 16 + secret[19:]
    for bad in (wrong_secret, unknown_id, secret + "x", secret[:-1], "", "bk_", secret.upper()):
        assert store.authenticate(bad) is None, bad
    store.revoke("alice")
    assert store.authenticate(secret) is None
    with pytest.raises(NotFound):
        store.revoke("alice")


def test_only_a_hash_of_the_secret_is_stored(store: KeyStore) -> None:
    _, secret = store.create("bob", "admin")
    with store.db.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_keys")).all()
    stored = " ".join(str(v) for row in rows for v in row)
    assert secret not in stored and secret.split("_", 2)[2] not in stored


def test_names_are_unique_among_active_keys_and_free_again_after_revocation(store: KeyStore) -> None:
    first, _ = store.create("carol", "speak")
    with pytest.raises(InvalidRequest, match="an active key is named 'carol'"):
        store.create("carol", "clone")
    store.revoke("carol")
    second, secret = store.create("carol", "clone")
    assert second.id != first.id and store.authenticate(secret) == second
    assert [k.name for k in store.list_keys()] == ["carol", "carol"] and len(
        store.list_keys(include_revoked=False)
    ) == 1


def test_a_revoked_key_still_counts_as_created(store: KeyStore) -> None:
    assert not store.any_created()
    store.create("dave", "speak")
    store.revoke("dave")
    assert store.any_created() and store.active_count() == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "a key name is 1-64"),
        ("name", "has space", "a key name is 1-64"),
        ("name", "x" * 65, "a key name is 1-64"),
        ("name", "ümlaut", "a key name is 1-64"),
        ("name", "-lead", "a key name is 1-64"),
        ("name", "new\nline", "a key name is 1-64"),
        ("scopes", "", "scopes are a comma-separated list"),
        ("scopes", "speak,root", "scopes are a comma-separated list"),
        ("scopes", ",", "scopes are a comma-separated list"),
        ("rate", "0", "rate must be a whole number from 1 to 100000"),
        ("rate", "-5", "rate must be a whole number"),
        ("rate", "1.5", "rate must be a whole number"),
        ("rate", "100001", "rate must be a whole number"),
        ("rate", "9" * 400, "rate must be a whole number"),
        ("rate", "10/day", "rate is counted per min"),
        ("rate", "ten", "rate must be a whole number"),
        ("rate", "²", "rate must be a whole number"),
        ("quota", "0/day", "quota must be a whole number from 1 to 10000000"),
        ("quota", "10000001", "quota must be a whole number"),
        ("quota", "60/min", "quota is counted per day"),
        ("quota", "1e3", "quota must be a whole number"),
    ],
)
def test_bad_key_settings_are_clear_errors(tmp_path: Path, field: str, value: str, message: str) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    args = {"name": "ok", "scopes": "speak", "rate_per_min": None, "quota": None}
    args[{"rate": "rate_per_min"}.get(field, field)] = value
    with pytest.raises(InvalidRequest, match=message):
        store.create(**args)
    assert store.list_keys() == []


def test_limits_read_with_or_without_their_unit() -> None:
    assert parse_limit("30", "min", 100, "rate") == parse_limit(" 30/minute ", "min", 100, "rate") == 30
    assert parse_limit("3600/day", "day", 10**7, "quota") == 3600
    assert parse_limit(None, "day", 10, "quota") is None and parse_limit("none", "day", 10, "quota") is None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_of_the_previous_version_opens_and_keeps_its_jobs(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    if kind == "postgresql":
        url = os.environ.get("BARKSERVE_TEST_DATABASE_URL", "")
        if not url:
            missing("set BARKSERVE_TEST_DATABASE_URL to test on PostgreSQL (.ci/postgres.sh starts one)")
        engine = make_db_engine(url)
        Base.metadata.drop_all(engine)
        engine.dispose()
    store = JobStore(url)
    job, _ = store.create(idempotency_key="k", request_hash="h", text="old", voice="v", model="m", format="mp3",
                          options={"seed": 1})  # fmt: skip
    store.db.dispose()
    engine = make_db_engine(url)
    with engine.begin() as conn:  # the jobs table as the version before tenancy made it
        conn.exec_driver_sql("DROP INDEX ix_jobs_tenant")
        conn.exec_driver_sql("ALTER TABLE jobs DROP COLUMN tenant")
        assert "tenant" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
    engine.dispose()
    reopened = JobStore(url)
    old = reopened.get(job.id)
    assert old.text == "old" and old.tenant is None
    assert reopened.get(job.id, tenant=None).id == job.id
    with pytest.raises(NotFound):
        reopened.get(job.id, tenant="someone")
    new, _ = reopened.create(idempotency_key=None, request_hash="h2", text="new", voice="v", model="m",
                             format="mp3", options={}, tenant="abc")  # fmt: skip
    assert [j.id for j in reopened.page(10, 0, tenant="abc")[0]] == [new.id]
    assert reopened.page(10, 0)[1] == 2
    with reopened.session() as session:
        assert session.get(Job, new.id).tenant == "abc"
    reopened.db.dispose()


def test_each_tenant_keeps_its_own_lexicon(store: KeyStore) -> None:
    alice, _ = store.create("alice", "speak,lexicon")
    assert "lexicon" in alice.scopes and store.lexicon(alice.id) is None
    store.set_lexicon(alice.id, {"en": {"Nguyen": "win"}})
    store.set_lexicon(None, {"*": {"gif": "jif"}})  # the anonymous tenant (keys off)
    store.set_lexicon(alice.id, {"en": {"Nguyen": "noo-yen"}})  # replaces the one before
    assert store.lexicon(alice.id) == {"en": {"Nguyen": "noo-yen"}}
    assert store.lexicon(None) == {"*": {"gif": "jif"}}
    assert store.delete_lexicon(alice.id) and not store.delete_lexicon(alice.id)
    assert store.lexicon(alice.id) is None and store.lexicon(None) is not None
