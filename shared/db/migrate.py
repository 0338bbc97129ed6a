"""Bring the job table to the newest Alembic revision; every entry point runs this before work starts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.settings import get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade_to_head(url: str | None = None) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is a ConfigParser: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", (url or get_settings().db_url).replace("%", "%%"))
    command.upgrade(config, "head")


if __name__ == "__main__":
    upgrade_to_head()
