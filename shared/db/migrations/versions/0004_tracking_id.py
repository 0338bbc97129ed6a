"""runs.tracking_id and jobs.tracking_id: the MLflow run of each row (docs/tracking.md)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tracking_id", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in ("runs", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tracking_id")
