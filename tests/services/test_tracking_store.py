"""Where the stack's own MLflow keeps its runs and logins: beside a PostgreSQL job table in two databases
of its own, in SQLite files in WAL mode for the embedded default; and a login checked once, not on every
request (services/tracking_store.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import urllib.request
import uuid
from pathlib import Path

import psycopg
from conftest import TEST_DATABASE_URL, free_port, postgres_database, wait_for

from services.local.plan import mlflow_program, mlflow_stores
from shared.settings import MLFLOW_SERVER_FILE, Settings


def test_the_embedded_default_keeps_mlflow_in_sqlite_files_in_wal_mode(tmp_path: Path) -> None:
    runs, logins = mlflow_stores(Settings(DATA_ROOT=tmp_path))
    for url in (runs, logins):
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",), path


def test_beside_a_postgresql_job_table_mlflow_keeps_its_runs_and_logins_there(tmp_path: Path) -> None:
    job_table, drop = postgres_database(f"fracatlas_store_{uuid.uuid4().hex[:8]}")
    name = job_table.rsplit("/", 1)[1]
    settings = Settings(DATA_ROOT=tmp_path, DATABASE_URL=job_table, MLFLOW_PORT=free_port())
    program = mlflow_program(settings)
    assert program.environment["MLFLOW_BACKEND_STORE_URI"].endswith(f"/{name}_mlflow")
    auth = Path(program.environment["MLFLOW_AUTH_CONFIG_PATH"]).read_text()
    assert f"/{name}_mlflow_auth\n" in auth and "auth_cache_ttl_seconds = 300\n" in auth
    assert name not in " ".join(program.command), "the store's URL (it may hold a password) is not on the command line"
    server = subprocess.Popen(
        program.command, env={**os.environ, **program.environment}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        url, user, password = (tmp_path / "stack" / MLFLOW_SERVER_FILE).read_text().split()

        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(healthy, 120, "MLflow on PostgreSQL to answer")
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment("on postgres"))
        client.log_metric(run.info.run_id, "dice", 0.5)
        plain = job_table.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain.rsplit("/", 1)[0] + f"/{name}_mlflow") as connection:
            assert connection.execute("SELECT run_uuid FROM runs").fetchall() == [(run.info.run_id,)]
        with psycopg.connect(plain.rsplit("/", 1)[0] + f"/{name}_mlflow_auth") as connection:
            assert (user,) in connection.execute("SELECT username FROM users").fetchall()
        with psycopg.connect(plain) as connection:
            tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables")}
            assert "experiments" not in tables, "MLflow's tables are not in the job table's database"
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
        server.terminate()
        server.wait(30)
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as connection:
            for database in (f"{name}_mlflow", f"{name}_mlflow_auth"):
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        drop()
