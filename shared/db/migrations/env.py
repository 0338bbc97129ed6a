from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, inspect, text

from shared.db.engine import engine_for
from shared.db.models import Base
from shared.settings import get_settings

# The job table's own revision table. Alembic's default name, `alembic_version`, belongs to Optuna's
# storage, which keeps its tables in the same database (docs/design.md, "Sweeps").
VERSION_TABLE = "job_table_version"
OUR_REVISIONS = ("0001", "0002", "0003", "0004")  # those written to `alembic_version` before the move


def _move_version_table(connection: Connection) -> None:
    """A database migrated before the move keeps its revision in `alembic_version`: carry it over."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or "alembic_version" not in tables:
        return
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision not in OUR_REVISIONS:
        return  # Optuna's, or another tool's: not ours to move
    connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"), {"revision": revision})
    connection.execute(text("DROP TABLE alembic_version"))


url = context.config.get_main_option("sqlalchemy.url") or get_settings().db_url

with engine_for(url).connect() as connection:
    _move_version_table(connection)
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=True, version_table=VERSION_TABLE
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
