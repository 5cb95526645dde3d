"""Relocatable runs: the head process of a run, the root its artifact paths are relative to,
every place the run's tree was later found or moved to, and the web address of its code.

Revision ID: 0006_relocatable_runs
Revises: 0005_slurm_restarts
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_relocatable_runs"
down_revision = "0005_slurm_restarts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("root", sa.Text(), nullable=True))
        batch.add_column(sa.Column("git_remote", sa.Text(), nullable=True))
    op.create_table(
        "run_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("checked", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_locations_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_run_locations"),
    )
    op.create_index("ix_run_locations_run_id", "run_locations", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_locations_run_id", table_name="run_locations")
    op.drop_table("run_locations")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("git_remote")
        batch.drop_column("root")
        batch.drop_column("pid")
