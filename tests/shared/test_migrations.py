"""The database's revisions: the job table's own (in `job_table_version`) and Optuna's storage beside it."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from shared.db.engine import get_engine
from shared.db.migrate import alembic_config, upgrade_to_head
from shared.settings import get_settings

# The newest revision ever written to `alembic_version` (shared/db/migrations/env.py's OUR_REVISIONS).
LAST_BEFORE_THE_MOVE = "0004"
OPTUNA_TABLES = {"studies", "trials", "trial_values", "trial_intermediate_values", "version_info", "alembic_version"}


def tables() -> set[str]:
    with get_engine().connect() as connection:
        return set(inspect(connection).get_table_names())


def revision(table: str) -> str:
    with get_engine().connect() as connection:
        return connection.execute(text(f"SELECT version_num FROM {table}")).scalar_one()


def test_the_job_table_and_optunas_storage_keep_their_own_revisions(db: str) -> None:
    assert {"runs", "jobs", "job_table_version"} | OPTUNA_TABLES <= tables()
    ours, optunas = revision("job_table_version"), revision("alembic_version")
    assert ours.isdigit() and optunas.startswith("v"), (ours, optunas)
    upgrade_to_head()  # again: nothing to do, nothing broken
    assert (revision("job_table_version"), revision("alembic_version")) == (ours, optunas)


def test_a_table_migrated_before_the_move_keeps_its_revision_and_gains_optunas_storage(db: str) -> None:
    head = revision("job_table_version")
    command.downgrade(alembic_config(get_settings().db_url), LAST_BEFORE_THE_MOVE)
    ours = revision("job_table_version")
    with get_engine().begin() as connection:  # the database as earlier versions of the project left it
        for table in ("trial_intermediate_values", "trial_values", "trial_params", "trial_system_attributes",
                      "trial_user_attributes", "trial_heartbeats", "trials", "study_directions",
                      "study_system_attributes", "study_user_attributes", "studies", "version_info",
                      "alembic_version", "job_table_version"):  # fmt: skip
            connection.execute(text(f"DROP TABLE {table}"))
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        connection.execute(text("INSERT INTO alembic_version VALUES (:revision)"), {"revision": ours})
    upgrade_to_head()
    assert ours == LAST_BEFORE_THE_MOVE and revision("job_table_version") == head, "carried over, then upgraded"
    assert tables() >= OPTUNA_TABLES and revision("alembic_version").startswith("v")
