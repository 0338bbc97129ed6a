"""Bring the database to the newest revision before work starts: the job table by the project's Alembic
migrations, then Optuna's storage for sweeps (its own tables and revisions, made here once so that trials
starting together never race to create them)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is a ConfigParser: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str | None = None) -> None:
    from shared.studies import prepare_storage

    url = url or get_settings().db_url
    command.upgrade(alembic_config(url), "head")
    prepare_storage(url)


if __name__ == "__main__":
    upgrade_to_head()
