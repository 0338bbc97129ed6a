from __future__ import annotations

from alembic import context

from shared.db.engine import engine_for
from shared.db.models import Base
from shared.settings import get_settings

url = context.config.get_main_option("sqlalchemy.url") or get_settings().db_url

with engine_for(url).connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
