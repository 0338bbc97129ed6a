"""The mlflow service's first steps: its two databases beside the job table's (runs and registry; logins),
made once, and the basic-auth app's config (0600). Prints the backend store's URL for the start script."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from services.local.plan import write_private
from shared.settings import get_settings

DATABASES = ("mlflow", "mlflow_auth")


def database_url(job_table_url: str, database: str) -> str:
    return urlunsplit(urlsplit(job_table_url)._replace(path=f"/{database}"))


def create_databases(job_table_url: str) -> None:
    plain = job_table_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main() -> None:
    settings = get_settings()
    create_databases(settings.db_url)
    username, password = settings.tracking_credentials
    write_private(
        Path(sys.argv[1]),
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {database_url(settings.db_url, 'mlflow_auth')}\n"
        f"admin_username = {username}\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
    )
    print(database_url(settings.db_url, "mlflow"))


if __name__ == "__main__":
    main()
