"""The job table: SQLAlchemy models, engine and Alembic migrations."""
