"""The server's database (SQLAlchemy): embedded SQLite in WAL mode by default, PostgreSQL on request.

Jobs (`jobs/store.py`) and API keys (`auth/keys.py`) keep their tables in it: one metadata, one schema
per database, created and migrated together.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

BUSY_TIMEOUT_SEC = 30.0  # how long SQLite waits for another process's write lock
SCHEMA_LOCK = 0x6261726B_6A6F6273  # the PostgreSQL advisory lock held while the tables are created


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


def make_db_engine(url: str) -> Any:
    """A SQLAlchemy engine; SQLite gets WAL mode and a busy timeout for concurrent threads."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SEC})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _set_wal(cursor: Any) -> None:
    """Switch to WAL mode, retrying while another connection holds the lock the switch needs."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SEC
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            # SQLite answers "locked" here at once, without waiting out the busy timeout
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def create_schema(engine: Any, metadata: MetaData | None = None) -> None:
    """Create the missing tables and columns; safe when several processes open one database at once."""
    metadata = Base.metadata if metadata is None else metadata
    with engine.connect() as conn:
        # Without a lock each process sees no tables, and all but the first fail to create them.
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, taken before the check (busy timeout)
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        metadata.create_all(conn)
        add_missing_columns(conn, metadata)
        conn.commit()


def add_missing_columns(conn: Any, metadata: MetaData) -> None:
    """Add the nullable columns a newer version declares to the tables an older one created (no data changes)."""
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"table {table.name} lacks column {column.name}, which cannot be added in place")
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
            for index in table.indexes:
                if [c.name for c in index.columns] == [column.name]:
                    index.create(conn, checkfirst=True)


class Database:
    """A store over the server's database: `db` (a SQLAlchemy engine, made from a URL or shared), the
    schema made on first use, and `session()`, one short transaction."""

    def __init__(self, url_or_db: Any) -> None:
        self.db = make_db_engine(url_or_db) if isinstance(url_or_db, str) else url_or_db
        create_schema(self.db)
        self._sessions = sessionmaker(self.db, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session
