"""slurm_workers: the gpu-queue workers submitted as SLURM jobs (docs/deployment.md); jobs.earlier_attempts:
the attempts handed back or lost, for the run's timeline

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("earlier_attempts", sa.JSON, nullable=False, server_default="[]"))
    op.create_table(
        "slurm_workers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slurm_job_id", sa.String(32), nullable=False, unique=True),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("replaces", sa.String(32), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("slurm_workers")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("earlier_attempts")
