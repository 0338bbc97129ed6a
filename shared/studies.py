"""Optuna's storage of the sweeps: its tables live in the job table's database (SQLite or PostgreSQL), one
study per sweep run. Optuna is imported only where a study is used: the migration step and the trials."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.db.engine import SQLITE_BUSY_TIMEOUT_MS

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


def study_name(run_id: int) -> str:
    return f"fracatlas-sweep-r{run_id}"


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    return {"pool_pre_ping": True}


def prepare_storage(url: str) -> None:
    """Create Optuna's tables, or upgrade them after an Optuna upgrade (`optuna storage upgrade`'s work)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_options(url), skip_compatibility_check=True)
    if storage.get_current_version() != storage.get_head_version():
        storage.upgrade()
    storage.remove_session()
    storage.engine.dispose()


@lru_cache(maxsize=4)
def open_storage(url: str) -> RDBStorage:
    """The storage as trials use it, one per process: its tables exist (the migration step made them)."""
    import optuna

    return optuna.storages.RDBStorage(url, engine_kwargs=_engine_options(url), skip_table_creation=True)
