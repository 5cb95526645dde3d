"""Key package versions of the Snakemake head process, one row per package and run.

Revision ID: 0002_run_packages
Revises: 0001_prov_core
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_run_packages"
down_revision = "0001_prov_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_packages",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_packages_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_packages"),
    )


def downgrade() -> None:
    op.drop_table("run_packages")
