"""Engines for the catalogue: SQLite tuned for many writers, PostgreSQL with snapshot reads.

SQLite allows one writer at a time. Python's sqlite3 starts a deferred transaction lazily and a
reader that later writes must upgrade its lock, which fails at once with "database is locked"
when another connection writes (the busy timeout does not apply to an upgrade). So every
catalogue write transaction starts with BEGIN IMMEDIATE, which takes the write lock up front
and waits up to the busy timeout for it; reads start with a plain BEGIN and, under WAL, never
block writers or each other.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.pool import StaticPool

from ferry.permissions import FILE_MODE, create_private, make_dir, tighten

# How long an SQLite writer waits for the write lock before giving up.
BUSY_TIMEOUT_S = 30.0
# Execution option naming the kind of transaction a connection is about to begin.
_WRITE = "ferry_catalog_write"


@dataclass(frozen=True)
class Engines:
    """One pool, seen through a read and a write view."""

    base: Engine
    read: Engine
    write: Engine
    # In-memory SQLite is one shared connection: transactions must not interleave.
    serialized: bool


def create_engines(url: str) -> Engines:
    """Engines for a database URL: sqlite:///PATH or postgresql+psycopg://..."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        if not in_memory:
            _private_database(Path(str(parsed.database)))
        return _sqlite(url, in_memory=in_memory)
    engine = create_engine(url, pool_pre_ping=True)
    # Reads run in REPEATABLE READ so the few queries that load an image see one snapshot;
    # read-only transactions never fail serialization in PostgreSQL. Writes stay READ COMMITTED
    # and take the image's row lock first (every write path begins with an UPDATE of it).
    read = engine.execution_options(isolation_level="REPEATABLE READ")
    return Engines(base=engine, read=read, write=engine, serialized=False)


def _private_database(path: Path) -> None:
    """Make the database file 0600 before SQLite opens it: SQLite creates its -wal and -shm
    files with the database's mode, and would create the database itself 0644."""
    make_dir(path.parent, parents=True)
    if path.exists():
        # Never open (and close) an existing database: closing any descriptor of a file
        # drops every fcntl lock this process holds on it, so another Catalog of this
        # process (ferry up serves several sites) would lose SQLite's locks mid-transaction.
        tighten(path, FILE_MODE)
    else:
        create_private(path)
    for extra in ("-wal", "-shm", "-journal"):
        tighten(path.with_name(path.name + extra), FILE_MODE)


def _wal(cursor: Any) -> None:
    """Switch to WAL. Switching takes a lock the busy timeout does not wait for (SQLite
    answers "database is locked" at once while another process creates or switches the
    database), so retry for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite(url: str, *, in_memory: bool) -> Engines:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    if in_memory:
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop sqlite3 from issuing its own BEGIN; _on_begin below issues the right one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    write = engine.execution_options(**{_WRITE: True})
    return Engines(base=engine, read=engine, write=write, serialized=in_memory)
