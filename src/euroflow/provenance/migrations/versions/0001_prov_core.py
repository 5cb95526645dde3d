"""PROV core: runs and jobs (activities), artifacts (entities), used/generated edges.

Revision ID: 0001_prov_core
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_prov_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("workdir", sa.Text(), nullable=False),
        sa.Column("snakefile", sa.Text(), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("user", sa.String(255), nullable=True),
        sa.Column("snakemake_version", sa.String(64), nullable=True),
        sa.Column("configfiles", sa.JSON(), nullable=True),
        sa.Column("snakemake_config_md5", sa.String(32), nullable=True),
        sa.Column("config_path", sa.Text(), nullable=True),
        sa.Column("config_hash", sa.String(64), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("snakemake_jobid", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("wildcards", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("shellcmd", sa.Text(), nullable=True),
        sa.Column("threads", sa.Integer(), nullable=True),
        sa.Column("is_local", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_jobs_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("run_id", "snakemake_jobid", "attempt", name="uq_jobs_run_id_snakemake_jobid_attempt"),
    )
    op.create_index("ix_jobs_run_id", "jobs", ["run_id"])
    op.create_index("ix_jobs_rule", "jobs", ["rule"])
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("path", "sha256", name="uq_artifacts_path_sha256"),
    )
    op.create_index("ix_artifacts_path", "artifacts", ["path"])
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"])
    for edge in ("used", "generated"):
        op.create_table(
            edge,
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("artifact_id", sa.Integer(), nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=f"fk_{edge}_job_id_jobs", ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], name=f"fk_{edge}_artifact_id_artifacts"),
            sa.PrimaryKeyConstraint("job_id", "artifact_id", "role", name=f"pk_{edge}"),
        )
        op.create_index(f"ix_{edge}_artifact_id", edge, ["artifact_id"])


def downgrade() -> None:
    for edge in ("generated", "used"):
        op.drop_index(f"ix_{edge}_artifact_id", table_name=edge)
        op.drop_table(edge)
    op.drop_index("ix_artifacts_sha256", table_name="artifacts")
    op.drop_index("ix_artifacts_path", table_name="artifacts")
    op.drop_table("artifacts")
    op.drop_index("ix_jobs_rule", table_name="jobs")
    op.drop_index("ix_jobs_run_id", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("runs")
