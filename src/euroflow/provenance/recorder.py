"""Write provenance records. Every function takes an open session; the caller commits."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from euroflow.errors import EuroflowError
from euroflow.paths import artifact_category
from euroflow.provenance.hashing import Observation
from euroflow.provenance.locations import stored_path
from euroflow.provenance.models import Artifact, Environment, Generated, Job, Run, RunPackage, SlurmJob, Used


def utc(timestamp: float) -> dt.datetime:
    """A POSIX timestamp as a naive UTC datetime (how times are stored)."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).replace(tzinfo=None)


def start_run(
    session: Session,
    run_id: str,
    started_at: dt.datetime,
    *,
    workdir: str,
    snakefile: str | None = None,
    command: str | None = None,
    host: str | None = None,
    user: str | None = None,
    snakemake_version: str | None = None,
    configfiles: list[str] | None = None,
    snakemake_config_md5: str | None = None,
    git_commit: str | None = None,
    git_dirty: bool | None = None,
    git_diff_sha256: str | None = None,
    git_remote: str | None = None,
    site: str | None = None,
    profile: str | None = None,
    packages: dict[str, str | None] | None = None,
    environment: dict[str, Any] | None = None,
    pid: int | None = None,
    root: str | None = None,
) -> Run:
    if session.get(Run, run_id) is not None:
        raise EuroflowError(f"run {run_id}: already recorded")
    run = Run(
        id=run_id,
        status="running",
        started_at=started_at,
        workdir=workdir,
        snakefile=snakefile,
        command=command,
        host=host,
        user=user,
        snakemake_version=snakemake_version,
        configfiles=configfiles,
        snakemake_config_md5=snakemake_config_md5,
        git_commit=git_commit,
        git_dirty=git_dirty,
        git_diff_sha256=git_diff_sha256,
        git_remote=git_remote,
        site=site,
        profile=profile,
        pid=pid,
        root=root,
    )
    session.add(run)
    for name, version in (packages or {}).items():
        session.add(RunPackage(run_id=run_id, name=name, version=version))
    if environment is not None:
        session.add(Environment(run_id=run_id, captured_at=started_at, host=host, **environment))
    session.flush()
    return run


def set_run_config(
    session: Session, run_id: str, *, config_json: str, config_hash: str, config_path: str | None = None,
    root: str | None = None,
) -> Run:
    run = _run(session, run_id)
    run.config_json, run.config_hash, run.config_path = config_json, config_hash, config_path
    run.root = root or run.root
    session.flush()
    return run


def end_run(session: Session, run_id: str, ended_at: dt.datetime, status: str, error: str | None = None) -> Run:
    run = _run(session, run_id)
    run.status, run.ended_at, run.error = status, ended_at, error
    session.flush()
    return run


def head_alive(pid: int, started_at: dt.datetime) -> bool:
    """Whether the Snakemake head that started a run at ``started_at`` is still process ``pid`` on
    this host (a process created later only reuses the number)."""
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    return created <= started_at.replace(tzinfo=dt.timezone.utc).timestamp() + 5


def interrupt_stale_runs(
    session: Session, *, noticed_by: str, host: str | None, workdir: str | None = None, exclude: str | None = None,
    alive=head_alive,
) -> list[str]:
    """Mark as ``interrupted`` the runs still ``running`` whose head process is gone: on this
    ``host``, when its pid no longer runs; elsewhere, when a new run starts in the same ``workdir``
    (Snakemake's lock on the directory means the old head ended). Their running jobs too.
    Returns the run ids."""
    stopped = []
    for run in session.scalars(select(Run).where(Run.status == "running", Run.id != (exclude or ""))).all():
        here = host is not None and run.host == host and run.pid is not None
        if here:
            gone = not alive(run.pid, run.started_at)
        else:
            gone = workdir is not None and run.workdir == workdir
        if not gone:
            continue
        times = [t for job in run.jobs for t in (job.ended_at, job.started_at) if t is not None]
        ended = max(times, default=run.started_at)
        who = f"pid {run.pid} on {run.host}" if run.pid else f"on {run.host or 'an unknown host'}"
        run.status, run.ended_at = "interrupted", ended
        run.error = (f"interrupted: the Snakemake head process ({who}) ended without closing the run (killed, or its "
                     f"node was lost); noticed by {noticed_by}")
        for job in run.jobs:
            if job.status == "running":
                job.status, job.ended_at = "interrupted", ended
                job.error = "the run was interrupted while this job ran; its sidecar (prov ingest) may tell how it ended"
        stopped.append(run.id)
    session.flush()
    return stopped


def artifact_for(session: Session, observation: Observation, seen_at: dt.datetime, root: str | None = None) -> Artifact:
    """The artifact for this (path, sha256), created the first time it is seen; a path inside the
    run's results tree ``root`` is stored relative to it."""
    path = stored_path(observation.path, root)
    same_digest = Artifact.sha256.is_(None) if observation.sha256 is None else Artifact.sha256 == observation.sha256
    found = session.scalars(select(Artifact).where(Artifact.path == path, same_digest)).first()
    if found is not None:
        return found
    artifact = Artifact(
        path=path,
        sha256=observation.sha256,
        size=observation.size,
        kind=observation.kind,
        category=artifact_category(path),
        first_seen_at=seen_at,
    )
    session.add(artifact)
    session.flush()
    return artifact


def start_job(
    session: Session,
    run_id: str,
    snakemake_jobid: int,
    *,
    rule: str,
    started_at: dt.datetime,
    wildcards: dict[str, Any] | None = None,
    shellcmd: str | None = None,
    threads: int | None = None,
    is_local: bool | None = None,
    inputs: Iterable[tuple[str, Observation]] = (),
    attempt: int | None = None,
) -> Job:
    """Record a new attempt of a job (by default the one after the last recorded) and the
    artifacts it uses (role, observation)."""
    root = _run(session, run_id).root
    if attempt is None:
        previous = session.scalar(
            select(func.max(Job.attempt)).where(Job.run_id == run_id, Job.snakemake_jobid == snakemake_jobid)
        )
        attempt = (previous or 0) + 1
    job = Job(
        run_id=run_id,
        snakemake_jobid=snakemake_jobid,
        attempt=attempt,
        rule=rule,
        wildcards=dict(wildcards or {}),
        status="running",
        started_at=started_at,
        shellcmd=shellcmd,
        threads=threads,
        is_local=is_local,
    )
    session.add(job)
    session.flush()
    for role, observation in inputs:
        artifact = artifact_for(session, observation, started_at, root)
        if session.get(Used, (job.id, artifact.id, role)) is None:
            session.add(Used(job_id=job.id, artifact_id=artifact.id, role=role, at=started_at))
    session.flush()
    return job


def _record_generated(session: Session, job: Job, outputs: Iterable[tuple[str, Observation]], at: dt.datetime) -> None:
    root = job.run.root
    for role, observation in outputs:
        artifact = artifact_for(session, observation, at, root)
        if session.get(Generated, (job.id, artifact.id, role)) is None:
            session.add(Generated(job_id=job.id, artifact_id=artifact.id, role=role, at=at))


def finish_job(
    session: Session, job_id: int, ended_at: dt.datetime, outputs: Iterable[tuple[str, Observation]] = ()
) -> Job:
    """Mark a job attempt successful (exit status 0) and record what it generated."""
    job = _job(session, job_id)
    job.status, job.ended_at, job.exit_status = "success", ended_at, 0
    _record_generated(session, job, outputs, ended_at)
    return job


def fail_job(
    session: Session,
    job_id: int,
    ended_at: dt.datetime,
    *,
    error: str | None,
    exit_status: int | None = None,
    status: str = "failed",
    outputs: Iterable[tuple[str, Observation]] = (),
) -> Job:
    """Mark a job attempt failed (or incomplete) and record what it left (e.g. its log)."""
    job = _job(session, job_id)
    job.status, job.ended_at, job.error, job.exit_status = status, ended_at, error, exit_status
    _record_generated(session, job, outputs, ended_at)
    return job


SLURM_COLUMNS = (
    "array_index", "partition", "account", "qos", "nodelist", "num_nodes", "gpus",
    "state", "exit_code", "elapsed_s", "max_rss_bytes", "energy_j", "log_path",
    "started_at", "ended_at", "outcome",
)


def record_slurm(session: Session, job_id: int, fields: dict[str, Any]) -> SlurmJob:
    """Add or complete the Slurm allocation ``fields["slurm_jobid"]`` of a job attempt
    (known values are kept; a later source such as sacct fills what is missing or updates state)."""
    slurm_jobid = str(fields["slurm_jobid"])
    restart = int(fields.get("restart_count") or 0)
    row = session.scalars(
        select(SlurmJob).where(SlurmJob.job_id == job_id, SlurmJob.slurm_jobid == slurm_jobid, SlurmJob.restart_count == restart)
    ).first()
    if row is None:
        row = SlurmJob(job_id=job_id, slurm_jobid=slurm_jobid, restart_count=restart)
        session.add(row)
    for column in SLURM_COLUMNS:
        value = fields.get(column)
        if value is not None:
            setattr(row, column, value)
    return row


def apply_sidecar(session: Session, job_id: int, attempt: dict[str, Any], path: str | None) -> Job:
    """What only the job itself knew: its host, its sidecar and its Slurm allocation."""
    job = _job(session, job_id)
    job.host = attempt.get("host") or job.host
    job.sidecar = path or job.sidecar
    slurm = attempt.get("slurm")
    if isinstance(slurm, dict) and slurm.get("slurm_jobid"):
        record_slurm(session, job_id, slurm)
    # allocations the job submitted itself (the pretrain launcher), each requeue its own row
    for allocation in attempt.get("slurm_allocations") or []:
        if isinstance(allocation, dict) and allocation.get("slurm_jobid"):
            record_slurm(session, job_id, allocation)
    return job


def _run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise EuroflowError(f"run {run_id}: not recorded")
    return run


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise EuroflowError(f"job {job_id}: not recorded")
    return job
