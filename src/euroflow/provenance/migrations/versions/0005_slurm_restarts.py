"""A requeued Slurm job keeps its id: each allocation is (job id, restart count).

Revision ID: 0005_slurm_restarts
Revises: 0004_slurm_and_categories
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_slurm_restarts"
down_revision = "0004_slurm_and_categories"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slurm_jobs") as batch:
        batch.add_column(sa.Column("restart_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("started_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("ended_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(32), nullable=True))
        batch.drop_constraint("uq_slurm_jobs_job_id_slurm_jobid", type_="unique")
        batch.create_unique_constraint("uq_slurm_jobs_job_id_slurm_jobid_restart_count", ["job_id", "slurm_jobid", "restart_count"])


def downgrade() -> None:
    with op.batch_alter_table("slurm_jobs") as batch:
        batch.drop_constraint("uq_slurm_jobs_job_id_slurm_jobid_restart_count", type_="unique")
        batch.create_unique_constraint("uq_slurm_jobs_job_id_slurm_jobid", ["job_id", "slurm_jobid"])
        batch.drop_column("outcome")
        batch.drop_column("ended_at")
        batch.drop_column("started_at")
        batch.drop_column("restart_count")
