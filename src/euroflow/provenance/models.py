"""The provenance schema, modelled after W3C PROV.

Runs and jobs are activities, artifacts are entities, and ``used`` / ``generated`` are the
edges between them. Times are UTC. Every change to these classes needs an Alembic revision
in ``migrations/versions`` (the database is always created through the migrations). The values
the status and category columns take are listed in :mod:`euroflow.provenance.vocabulary`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints keep SQLite batch migrations (table rebuilds) deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One Snakemake invocation (a PROV activity); its id is Snakemake's workflow id."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    workdir: Mapped[str] = mapped_column(Text)
    snakefile: Mapped[Optional[str]] = mapped_column(Text)
    command: Mapped[Optional[str]] = mapped_column(Text)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    user: Mapped[Optional[str]] = mapped_column(String(255))
    snakemake_version: Mapped[Optional[str]] = mapped_column(String(64))
    configfiles: Mapped[Optional[list]] = mapped_column(JSON)
    snakemake_config_md5: Mapped[Optional[str]] = mapped_column(String(32))
    config_path: Mapped[Optional[str]] = mapped_column(Text)
    config_hash: Mapped[Optional[str]] = mapped_column(String(64))
    config_json: Mapped[Optional[str]] = mapped_column(Text)
    git_commit: Mapped[Optional[str]] = mapped_column(String(64))
    git_dirty: Mapped[Optional[bool]] = mapped_column(Boolean)
    # sha256 of `git diff HEAD --binary` plus untracked files: which uncommitted code ran
    git_diff_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    # the web address of the code's origin remote (https, no credentials): where the commit can be read
    git_remote: Mapped[Optional[str]] = mapped_column(Text)
    site: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    profile: Mapped[Optional[str]] = mapped_column(Text)
    error: Mapped[Optional[str]] = mapped_column(Text)
    # the Snakemake head process (on ``host``): a run still "running" whose head is gone was interrupted
    pid: Mapped[Optional[int]] = mapped_column(Integer)
    # the results directory the run wrote to: artifact paths below it are stored relative to it
    root: Mapped[Optional[str]] = mapped_column(Text)

    jobs: Mapped[list["Job"]] = relationship(back_populates="run", order_by="Job.id")
    packages: Mapped[list["RunPackage"]] = relationship(back_populates="run", order_by="RunPackage.name")
    environments: Mapped[list["Environment"]] = relationship(back_populates="run", order_by="Environment.id")
    locations: Mapped[list["RunLocation"]] = relationship(back_populates="run", order_by="RunLocation.id")


class RunLocation(Base):
    """Where a run's results tree was found later (``prov relocate``): an archive, a copy, a new
    scratch path. ``checked`` counts the artifacts verified there when it was recorded."""

    __tablename__ = "run_locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    root: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime)
    checked: Mapped[Optional[int]] = mapped_column(Integer)
    note: Mapped[Optional[str]] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="locations")


class RunPackage(Base):
    """A key package's version in the Snakemake head process of a run (None: not installed)."""

    __tablename__ = "run_packages"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[Optional[str]] = mapped_column(String(128))

    run: Mapped[Run] = relationship(back_populates="packages")


class Job(Base):
    """One attempt of one Snakemake job (a PROV activity informed by its run)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("run_id", "snakemake_jobid", "attempt"),
        Index("ix_jobs_run_id_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    snakemake_jobid: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    rule: Mapped[str] = mapped_column(String(255), index=True)
    wildcards: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    exit_status: Mapped[Optional[int]] = mapped_column(Integer)
    error: Mapped[Optional[str]] = mapped_column(Text)
    shellcmd: Mapped[Optional[str]] = mapped_column(Text)
    threads: Mapped[Optional[int]] = mapped_column(Integer)
    is_local: Mapped[Optional[bool]] = mapped_column(Boolean)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    # the job's own sidecar record, if one was ingested (euroflow prov ingest)
    sidecar: Mapped[Optional[str]] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="jobs")
    slurm: Mapped[list["SlurmJob"]] = relationship(back_populates="job", order_by="SlurmJob.id")
    used: Mapped[list["Used"]] = relationship(back_populates="job", order_by="Used.artifact_id")
    generated: Mapped[list["Generated"]] = relationship(back_populates="job", order_by="Generated.artifact_id")


class Artifact(Base):
    """A PROV entity: the content found at a path. Same path and same sha256: same artifact.
    ``path`` is relative (no leading ``/``) when the file lies in the results tree of the run that
    recorded it (``runs.root``), so that the record survives moving the tree; absolute otherwise
    (the shared data bundle, crawl shards)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("path", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, index=True)
    sha256: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    size: Mapped[Optional[int]] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[Optional[str]] = mapped_column(String(32), index=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Used(Base):
    """PROV ``used``: a job read an artifact (role: input)."""

    __tablename__ = "used"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)

    job: Mapped[Job] = relationship(back_populates="used")
    artifact: Mapped[Artifact] = relationship()


class Generated(Base):
    """PROV ``wasGeneratedBy``: a job wrote an artifact (role: output, log or benchmark)."""

    __tablename__ = "generated"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)

    job: Mapped[Job] = relationship(back_populates="generated")
    artifact: Mapped[Artifact] = relationship()


class Environment(Base):
    """The software environment a run (the Snakemake head process) ran in; secrets redacted."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    captured_at: Mapped[dt.datetime] = mapped_column(DateTime)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    python: Mapped[Optional[str]] = mapped_column(String(32))
    torch: Mapped[Optional[str]] = mapped_column(String(64))
    cuda: Mapped[Optional[str]] = mapped_column(String(32))
    rocm: Mapped[Optional[str]] = mapped_column(String(32))
    container_image: Mapped[Optional[str]] = mapped_column(Text)
    container_digest: Mapped[Optional[str]] = mapped_column(String(80))
    loaded_modules: Mapped[list] = mapped_column(JSON, default=list)
    gpus: Mapped[list] = mapped_column(JSON, default=list)
    packages: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    variables: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    run: Mapped[Run] = relationship(back_populates="environments")


class SlurmJob(Base):
    """A Slurm allocation that ran (part of) a job attempt: a requeued job has several.
    Fields come from the job's own environment (its sidecar) and from Slurm accounting (sacct)."""

    __tablename__ = "slurm_jobs"
    __table_args__ = (UniqueConstraint("job_id", "slurm_jobid", "restart_count"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    slurm_jobid: Mapped[str] = mapped_column(String(32), index=True)
    restart_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    array_index: Mapped[Optional[int]] = mapped_column(Integer)
    partition: Mapped[Optional[str]] = mapped_column(String(64))
    account: Mapped[Optional[str]] = mapped_column(String(64))
    qos: Mapped[Optional[str]] = mapped_column(String(64))
    nodelist: Mapped[Optional[str]] = mapped_column(Text)
    num_nodes: Mapped[Optional[int]] = mapped_column(Integer)
    gpus: Mapped[Optional[int]] = mapped_column(Integer)
    state: Mapped[Optional[str]] = mapped_column(String(32))
    exit_code: Mapped[Optional[str]] = mapped_column(String(16))
    elapsed_s: Mapped[Optional[float]] = mapped_column(Float)
    max_rss_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    energy_j: Mapped[Optional[float]] = mapped_column(Float)
    log_path: Mapped[Optional[str]] = mapped_column(Text)
    started_at: Mapped[Optional[float]] = mapped_column(Float)
    ended_at: Mapped[Optional[float]] = mapped_column(Float)
    outcome: Mapped[Optional[str]] = mapped_column(String(32))

    job: Mapped[Job] = relationship(back_populates="slurm")
