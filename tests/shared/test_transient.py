"""Database outages that a process waits out, and errors it must not wait on."""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest
from conftest import free_port
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from shared.db import transient
from shared.db.engine import engine_for


def wrapped(error: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, error)


def test_busy_sqlite_and_lost_server_connections_are_transient() -> None:
    assert transient.is_transient(wrapped(sqlite3.OperationalError("database is locked")))
    assert transient.is_transient(wrapped(psycopg.OperationalError("connection refused")))
    assert not transient.is_transient(wrapped(sqlite3.OperationalError("no such table: jobs")))
    assert not transient.is_transient(ValueError("not a database error"))


def test_a_transient_error_is_retried_until_it_clears() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))
        return "done"

    assert transient.call(10, flaky) == "done" and len(calls) == 3


def test_a_permanent_error_is_raised_at_once() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise wrapped(sqlite3.OperationalError("no such table: jobs"))

    with pytest.raises(OperationalError):
        transient.call(10, broken)
    assert calls == 1


def test_a_server_that_stays_away_is_waited_for_only_the_window() -> None:
    engine = engine_for(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test", 1.5)
    started = time.monotonic()
    with pytest.raises(OperationalError), engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert 1.0 <= time.monotonic() - started < 8
