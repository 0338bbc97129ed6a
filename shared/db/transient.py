"""Database outages a process waits out: a server restarting, a connection dropped, SQLite busy.

Two layers (docs/reliability.md): every new connection is retried for the process's window, so any
transaction that starts during an outage waits for the server; and the job lifecycle's writes from a
worker are retried whole, for a transaction that lost its connection halfway.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from shared.redact import redact_text

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """True for an error that the same statement may not meet a little later (or one that wraps such an
    error, as Optuna's storage does)."""
    if error.__cause__ is not None and is_transient(error.__cause__):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error) or "busy" in str(error)
    import psycopg

    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def _say_once(state: RetryCallState) -> None:
    if state.attempt_number == 1 and state.outcome is not None:
        error = state.outcome.exception()
        log.warning("the job table is unreachable (%s); retrying", redact_text(str(error)).splitlines()[0])


def retrying(window_s: float) -> Retrying:
    """Retry transient database errors with backoff (0.2 s growing to 5 s) for `window_s` seconds."""
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(window_s),
        before_sleep=_say_once,
        reraise=True,
    )


def call(window_s: float, function: Callable[..., T], *args: object, **kwargs: object) -> T:
    return retrying(window_s)(function, *args, **kwargs)
