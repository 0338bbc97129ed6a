"""jobs.queued_at (lost messages are sent again) and jobs.handed_back (shutdowns cost no attempt)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("handed_back", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE jobs SET queued_at = created_at WHERE state = 'queued'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("handed_back")
        batch.drop_column("queued_at")
