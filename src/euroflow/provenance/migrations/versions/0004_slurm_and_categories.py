"""Slurm allocations per job attempt, artifact categories, run site/profile/diff hash,
job host and sidecar, container digest, and an index for per-run status counts.

Revision ID: 0004_slurm_and_categories
Revises: 0003_environments
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_slurm_and_categories"
down_revision = "0003_environments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("git_diff_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("site", sa.String(64), nullable=True))
        batch.add_column(sa.Column("profile", sa.Text(), nullable=True))
        batch.create_index("ix_runs_site", ["site"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("sidecar", sa.Text(), nullable=True))
        batch.create_index("ix_jobs_run_id_status", ["run_id", "status"])
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("category", sa.String(32), nullable=True))
        batch.create_index("ix_artifacts_category", ["category"])
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("container_digest", sa.String(80), nullable=True))
    op.create_table(
        "slurm_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("slurm_jobid", sa.String(32), nullable=False),
        sa.Column("array_index", sa.Integer(), nullable=True),
        sa.Column("partition", sa.String(64), nullable=True),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("qos", sa.String(64), nullable=True),
        sa.Column("nodelist", sa.Text(), nullable=True),
        sa.Column("num_nodes", sa.Integer(), nullable=True),
        sa.Column("gpus", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("exit_code", sa.String(16), nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=True),
        sa.Column("max_rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("energy_j", sa.Float(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_slurm_jobs_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_slurm_jobs"),
        sa.UniqueConstraint("job_id", "slurm_jobid", name="uq_slurm_jobs_job_id_slurm_jobid"),
    )
    op.create_index("ix_slurm_jobs_job_id", "slurm_jobs", ["job_id"])
    op.create_index("ix_slurm_jobs_slurm_jobid", "slurm_jobs", ["slurm_jobid"])


def downgrade() -> None:
    op.drop_table("slurm_jobs")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("container_digest")
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_index("ix_artifacts_category")
        batch.drop_column("category")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_run_id_status")
        batch.drop_column("sidecar")
        batch.drop_column("host")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_site")
        batch.drop_column("profile")
        batch.drop_column("site")
        batch.drop_column("git_diff_sha256")
