"""One engine per process and database URL; SQLite gets WAL and a busy timeout for many writers.

A server database's connections are opened through a retry (shared/db/transient.py): a worker waits out
an outage of DB_RETRY_SECONDS, the dispatcher one of DISPATCH_RETRY_SECONDS (set_retry_window).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.db import transient
from shared.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
_retry_window_s: float | None = None  # None: the worker's window, DB_RETRY_SECONDS


def set_retry_window(seconds: float) -> None:
    """How long this process waits for an unreachable database server before it gives up."""
    global _retry_window_s
    _retry_window_s = seconds
    engine_for.cache_clear()


def retry_window_s() -> float:
    return _retry_window_s if _retry_window_s is not None else get_settings().db_retry_seconds


@lru_cache
def engine_for(url: str, connect_retry_s: float = 0.0) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "do_connect")
    def _connect_through_outages(dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
        return transient.call(connect_retry_s, dialect.connect, *cargs, **cparams)

    return engine


def get_engine() -> Engine:
    return engine_for(get_settings().db_url, retry_window_s())


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    session = sessionmaker(get_engine(), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
