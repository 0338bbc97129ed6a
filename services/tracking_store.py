"""Where the stack's MLflow server keeps its runs and logins, and how its basic-auth app checks a login;
used by the local stack (services/local/plan.py) and the compose mlflow service (services/docker/mlflow_setup.py).

- On PostgreSQL when the job table is there: two databases beside the job table's, one for runs and the
  registry, one for logins (MLflow's migrations and ours each keep an `alembic_version` table, so they
  cannot share one database). SQLite only for the embedded default, and then in WAL mode, so that the
  UI's reads do not wait on the workers' writes.
- A login is checked once per MLFLOW_AUTH_CACHE_SECONDS (300), not on every request: the auth app's check
  is a scrypt hash, about 170 ms of CPU on this project's 2-core machines, and without the cache it held
  the server to a few requests per second (docs/tracking.md, "Lag"). A password changed through MLflow's
  API takes effect at once on the server process that changed it, on the others (compose runs two)
  within that time.
- No job runners: MLflow 3 starts seven Huey consumer processes beside its server for its GenAI jobs
  (scorers, trace roll-ups), which this project does not use; each imports MLflow, about 17 s of CPU in
  all in the first ten seconds after `make up`, which the first jobs used to pay for.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

SERVER_WITHOUT_JOB_RUNNERS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def on_postgres(job_table_url: str) -> bool:
    return job_table_url.startswith("postgresql")


def beside_job_table(job_table_url: str) -> tuple[str, str]:
    """The local stack's MLflow databases beside its job table's: `<job table>_mlflow`, `..._mlflow_auth`."""
    job_table = urlsplit(job_table_url).path.lstrip("/")
    return f"{job_table}_mlflow", f"{job_table}_mlflow_auth"


def database_url(job_table_url: str, database: str) -> str:
    return urlunsplit(urlsplit(job_table_url)._replace(path=f"/{database}"))


def create_databases(job_table_url: str, names: list[str]) -> None:
    """The databases `names` on the job table's PostgreSQL server, each made the first time."""
    plain = job_table_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def sqlite_in_wal(path: Path) -> str:
    """A SQLite store in WAL mode (the mode stays with the file; MLflow's migrations then run in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return f"sqlite:///{path}"


def auth_config(database_uri: str, username: str | None, password: str, cache_seconds: int) -> str:
    """The basic-auth app's configuration: the first admin login, READ for everyone else, logins cached."""
    return (
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {username}\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {cache_seconds}\n"
    )
