"""Environment snapshots: packages, torch/CUDA/ROCm build, container, modules, GPUs, variables.

Revision ID: 0003_environments
Revises: 0002_run_packages
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_environments"
down_revision = "0002_run_packages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("captured_at", sa.DateTime(), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("python", sa.String(32), nullable=True),
        sa.Column("torch", sa.String(64), nullable=True),
        sa.Column("cuda", sa.String(32), nullable=True),
        sa.Column("rocm", sa.String(32), nullable=True),
        sa.Column("container_image", sa.Text(), nullable=True),
        sa.Column("loaded_modules", sa.JSON(), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_environments_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_environments"),
    )
    op.create_index("ix_environments_run_id", "environments", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_environments_run_id", "environments")
    op.drop_table("environments")
