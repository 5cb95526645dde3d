"""Read provenance records as plain JSON-ready dicts (times: ISO 8601, UTC)."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from sqlalchemy import Engine, bindparam, case, func, select, text
from sqlalchemy.orm import Session, selectinload

from euroflow.errors import EuroflowError
from euroflow.provenance.models import Artifact, Generated, Job, Run, SlurmJob, Used


def _iso(value: dt.datetime | str | None) -> str | None:
    if isinstance(value, str):  # raw SQL rows carry SQLite's text form
        value = dt.datetime.fromisoformat(value)
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat()


def resolve_run_id(session: Session, run_id: str) -> str:
    """The full id of the run whose id is ``run_id`` or starts with it (unambiguously)."""
    if session.get(Run, run_id) is not None:
        return run_id
    matches = session.scalars(select(Run.id).where(Run.id.startswith(run_id, autoescape=True))).all()
    if not matches:
        raise EuroflowError(f"run {run_id}: no such run in the provenance database")
    if len(matches) > 1:
        raise EuroflowError(f"run {run_id}: ambiguous prefix, matches {len(matches)} runs")
    return matches[0]


def _run_summary(run: Run, n_jobs: int, n_failed: int) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "jobs": n_jobs,
        "failed_attempts": n_failed,
        "git_commit": run.git_commit,
        "git_dirty": run.git_dirty,
        "config_hash": run.config_hash,
        "host": run.host,
        "user": run.user,
        "site": run.site,
        "profile": run.profile,
        "git_diff_sha256": run.git_diff_sha256,
    }


def _day_bound(value: str | dt.date | dt.datetime, *, end: bool) -> dt.datetime:
    """A date (the whole day) or an ISO time, as the naive UTC datetime runs are stored in."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise EuroflowError(f"{value!r}: not a date (YYYY-MM-DD) or an ISO 8601 time") from None
        whole_day = len(value) == 10
    else:
        parsed, whole_day = value, not isinstance(value, dt.datetime)
        parsed = parsed if isinstance(parsed, dt.datetime) else dt.datetime.combine(parsed, dt.time())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed + dt.timedelta(days=1) if whole_day and end else parsed


def list_runs(
    engine: Engine,
    *,
    site: str | None = None,
    status: str | None = None,
    since: str | dt.date | None = None,
    until: str | dt.date | None = None,
) -> list[dict[str, Any]]:
    """Runs, oldest first, with job counts; filtered by site, status and start time
    (``since``/``until``: dates include the whole day)."""
    counts = (
        select(Job.run_id, func.count().label("n"), func.sum(case((Job.status == "failed", 1), else_=0)).label("failed"))
        .group_by(Job.run_id)
        .subquery()
    )
    query = select(Run, counts.c.n, counts.c.failed).outerjoin(counts, counts.c.run_id == Run.id)
    if site is not None:
        query = query.where(Run.site == site)
    if status is not None:
        query = query.where(Run.status == status)
    if since is not None:
        query = query.where(Run.started_at >= _day_bound(since, end=False))
    if until is not None:
        query = query.where(Run.started_at < _day_bound(until, end=True))
    with Session(engine) as session:
        rows = session.execute(query.order_by(Run.started_at, Run.id)).all()
        return [_run_summary(run, int(n or 0), int(f or 0)) for run, n, f in rows]


def _edge(edge: Used | Generated) -> dict[str, Any]:
    a = edge.artifact
    return {
        "role": edge.role,
        "path": a.path,
        "sha256": a.sha256,
        "size": a.size,
        "kind": a.kind,
        "category": a.category,
        "artifact_id": a.id,
    }


SLURM_FIELDS = (
    "slurm_jobid", "array_index", "partition", "account", "qos", "nodelist", "num_nodes", "gpus",
    "state", "exit_code", "elapsed_s", "max_rss_bytes", "energy_j", "log_path",
)


def _slurm_dict(slurm: SlurmJob) -> dict[str, Any]:
    return {name: getattr(slurm, name) for name in SLURM_FIELDS}


def _job_dict(job: Job, with_edges: bool) -> dict[str, Any]:
    out = {
        "id": job.id,
        "snakemake_jobid": job.snakemake_jobid,
        "attempt": job.attempt,
        "rule": job.rule,
        "wildcards": job.wildcards,
        "status": job.status,
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "exit_status": job.exit_status,
        "error": job.error,
        "threads": job.threads,
        "local": job.is_local,
        "shellcmd": job.shellcmd,
        "host": job.host,
        "sidecar": job.sidecar,
        "slurm": [_slurm_dict(s) for s in job.slurm],
    }
    if with_edges:
        out["used"] = [_edge(e) for e in job.used]
        out["generated"] = [_edge(e) for e in job.generated]
    return out


def _jobs(session: Session, run_id: str, *, with_edges: bool = True) -> list[Job]:
    query = select(Job).where(Job.run_id == run_id).order_by(Job.started_at, Job.id).options(selectinload(Job.slurm))
    if with_edges:
        query = query.options(
            selectinload(Job.used).selectinload(Used.artifact),
            selectinload(Job.generated).selectinload(Generated.artifact),
        )
    return list(session.scalars(query))


def list_jobs(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The jobs (one entry per attempt) of a run, in start order, without their artifacts."""
    with Session(engine) as session:
        run_id = resolve_run_id(session, run_id)
        return [_job_dict(job, with_edges=False) for job in _jobs(session, run_id, with_edges=False)]


def run_detail(engine: Engine, run_id: str) -> dict[str, Any]:
    """A run with its packages, config, jobs (with used/generated artifacts) and the
    distinct artifacts it touched."""
    with Session(engine) as session:
        run_id = resolve_run_id(session, run_id)
        run = session.get(Run, run_id)
        jobs = _jobs(session, run_id)
        n_failed = sum(1 for j in jobs if j.status == "failed")
        detail = _run_summary(run, len(jobs), n_failed)
        detail.update(
            workdir=run.workdir,
            snakefile=run.snakefile,
            command=run.command,
            snakemake_version=run.snakemake_version,
            configfiles=run.configfiles,
            snakemake_config_md5=run.snakemake_config_md5,
            config_path=run.config_path,
            config_json=run.config_json,
            error=run.error,
            packages={p.name: p.version for p in run.packages},
            environments=[
                {
                    "captured_at": _iso(e.captured_at),
                    "host": e.host,
                    "python": e.python,
                    "torch": e.torch,
                    "cuda": e.cuda,
                    "rocm": e.rocm,
                    "container_image": e.container_image,
                    "container_digest": e.container_digest,
                    "loaded_modules": e.loaded_modules,
                    "gpus": e.gpus,
                    "packages": e.packages,
                    "variables": e.variables,
                }
                for e in run.environments
            ],
        )
        detail["jobs"] = [_job_dict(job, with_edges=True) for job in jobs]
        artifacts: dict[int, dict[str, Any]] = {}
        for job in detail["jobs"]:
            for edge in job["used"] + job["generated"]:
                artifacts.setdefault(edge["artifact_id"], {k: v for k, v in edge.items() if k != "role"})
        detail["artifacts"] = sorted(artifacts.values(), key=lambda a: (a["path"], a["artifact_id"]))
        return detail


_LATEST_PRODUCERS = text(
    "SELECT artifact_id, job_id FROM ("
    " SELECT g.artifact_id, j.id AS job_id,"
    " ROW_NUMBER() OVER (PARTITION BY g.artifact_id ORDER BY j.ended_at DESC, j.id DESC) AS rank"
    " FROM generated g JOIN jobs j ON j.id = g.job_id"
    " WHERE g.artifact_id IN :ids AND g.role = 'output' AND j.status = 'success'"
    ") WHERE rank = 1"
).bindparams(bindparam("ids", expanding=True))
_JOBS_WITH_RUNS = text(
    "SELECT j.id, j.rule, j.wildcards, j.run_id, j.snakemake_jobid, j.ended_at, r.git_commit, r.git_dirty, r.config_hash"
    " FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id IN :ids"
).bindparams(bindparam("ids", expanding=True))
_JOB_INPUTS = text(
    "SELECT u.job_id, a.id, a.path, a.kind, a.category, a.sha256, a.size FROM used u JOIN artifacts a ON a.id = u.artifact_id"
    " WHERE u.job_id IN :ids AND u.role = 'input'"
).bindparams(bindparam("ids", expanding=True))
_ATTEMPTS = text(
    "SELECT j.snakemake_jobid, j.attempt, j.status, group_concat(s.slurm_jobid) AS slurm"
    " FROM jobs j LEFT JOIN slurm_jobs s ON s.job_id = j.id"
    " WHERE j.run_id = :run AND j.snakemake_jobid IN :ids GROUP BY j.id"
).bindparams(bindparam("ids", expanding=True))
_CHUNK = 30_000  # below SQLite's limit on bound parameters


def _chunks(ids) -> Any:
    ids = list(ids)
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def lineage(engine: Engine, path: str | os.PathLike) -> dict[str, Any]:
    """The tree from the artifact at ``path`` (its most recently recorded content) back to the
    artifacts no recorded job produced. An artifact reached twice is expanded once (``"seen": true``).

    Walks the graph a level at a time (a few statements per level, not per node): a model trained
    on thousands of shards has a lineage of tens of thousands of nodes."""
    abspath = os.path.abspath(path)
    with engine.connect() as connection:
        root = connection.execute(
            text("SELECT id, path, kind, category, sha256, size FROM artifacts WHERE path = :path ORDER BY first_seen_at DESC, id DESC LIMIT 1"),
            {"path": abspath},
        ).first()
        if root is None:
            raise EuroflowError(f"{path}: no such artifact in the provenance database")
        artifacts, producer, jobs, inputs = {root.id: root}, {}, {}, {}
        frontier = {root.id}
        while frontier:
            new_jobs = set()
            for chunk in _chunks(frontier):
                for artifact_id, job_id in connection.execute(_LATEST_PRODUCERS, {"ids": chunk}):
                    producer[artifact_id] = job_id
                    if job_id not in jobs:
                        new_jobs.add(job_id)
            frontier = set()
            for chunk in _chunks(new_jobs):
                for row in connection.execute(_JOBS_WITH_RUNS, {"ids": chunk}):
                    jobs[row.id], inputs[row.id] = row, []
                for row in connection.execute(_JOB_INPUTS, {"ids": chunk}):
                    inputs[row.job_id].append(row.id)
                    if row.id not in artifacts:
                        artifacts[row.id] = row
                        frontier.add(row.id)
        attempts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        by_run: dict[str, set[int]] = {}
        for job in jobs.values():
            by_run.setdefault(job.run_id, set()).add(job.snakemake_jobid)
        for run_id, jobids in by_run.items():
            for chunk in _chunks(jobids):
                for jobid, attempt, status, slurm in connection.execute(_ATTEMPTS, {"run": run_id, "ids": chunk}):
                    attempts.setdefault((run_id, jobid), []).append(
                        {"attempt": attempt, "status": status, "slurm_jobids": sorted(slurm.split(",")) if slurm else []}
                    )

    expanded: set[int] = set()

    def node(artifact_id: int) -> dict[str, Any]:
        a = artifacts[artifact_id]
        out: dict[str, Any] = {"path": a.path, "kind": a.kind, "category": a.category, "sha256": a.sha256, "size": a.size}
        if artifact_id in expanded:
            out["seen"] = True
            return out
        expanded.add(artifact_id)
        job_id = producer.get(artifact_id)
        if job_id is not None:
            job = jobs[job_id]
            out["job"] = {
                "rule": job.rule,
                "wildcards": json.loads(job.wildcards) if isinstance(job.wildcards, str) else job.wildcards,
                "run": job.run_id,
                "attempts": sorted(attempts[(job.run_id, job.snakemake_jobid)], key=lambda t: t["attempt"]),
                "ended_at": _iso(job.ended_at),
                "git_commit": job.git_commit,
                "git_dirty": None if job.git_dirty is None else bool(job.git_dirty),
                "config_hash": job.config_hash,
            }
            out["inputs"] = [node(i) for i in sorted(inputs[job_id], key=lambda i: artifacts[i].path)]
        return out

    return node(root.id)


def verify(engine: Engine, run_id: str) -> dict[str, Any]:
    """Recompute the digest of every file and directory a run read or wrote; report what changed."""
    from euroflow.provenance.hashing import DigestCache, observe

    with Session(engine) as session:
        run_id = resolve_run_id(session, run_id)
        artifacts = session.scalars(
            select(Artifact)
            .where(
                Artifact.id.in_(select(Used.artifact_id).join(Job, Job.id == Used.job_id).where(Job.run_id == run_id))
                | Artifact.id.in_(
                    select(Generated.artifact_id).join(Job, Job.id == Generated.job_id).where(Job.run_id == run_id)
                )
            )
            .where(Artifact.kind.in_(("file", "directory")))
            .order_by(Artifact.path)
        ).all()
        cache = DigestCache()
        checked = []
        for a in artifacts:
            now = observe(a.path, cache)
            status = "missing" if now.kind == "missing" else "ok" if now.sha256 == a.sha256 else "changed"
            checked.append({"path": a.path, "status": status, "recorded_sha256": a.sha256, "current_sha256": now.sha256})
        problems = [c for c in checked if c["status"] != "ok"]
        return {"run": run_id, "checked": len(checked), "ok": not problems, "problems": problems}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _run_artifacts(session: Session, run: Run) -> dict[str, str | None]:
    """Path (relative to the run's working directory) -> sha256 of what the run read or wrote."""
    rows = session.execute(
        select(Artifact.path, Artifact.sha256)
        .join(Used, Used.artifact_id == Artifact.id)
        .join(Job, Job.id == Used.job_id)
        .where(Job.run_id == run.id)
        .union(
            select(Artifact.path, Artifact.sha256)
            .join(Generated, Generated.artifact_id == Artifact.id)
            .join(Job, Job.id == Generated.job_id)
            .where(Job.run_id == run.id, Generated.role == "output")
        )
    ).all()
    return {os.path.relpath(path, run.workdir) if run.workdir else path: sha for path, sha in rows}


def diff_runs(engine: Engine, run_a: str, run_b: str) -> dict[str, Any]:
    """What differs between two runs: config keys, code, package versions, artifact checksums.
    Artifacts are matched by their path relative to each run's working directory."""
    with Session(engine) as session:
        a = session.get(Run, resolve_run_id(session, run_a))
        b = session.get(Run, resolve_run_id(session, run_b))
        config_a = _flatten(json.loads(a.config_json)) if a.config_json else {}
        config_b = _flatten(json.loads(b.config_json)) if b.config_json else {}
        packages_a = {p.name: p.version for p in a.packages}
        packages_b = {p.name: p.version for p in b.packages}
        artifacts_a, artifacts_b = _run_artifacts(session, a), _run_artifacts(session, b)

        def changed(left: dict, right: dict) -> list[dict[str, Any]]:
            keys = sorted(set(left) | set(right))
            return [{"key": k, "a": left.get(k), "b": right.get(k)} for k in keys if left.get(k) != right.get(k)]

        code = {
            "git_commit": {"a": a.git_commit, "b": b.git_commit},
            "git_dirty": {"a": a.git_dirty, "b": b.git_dirty},
            "snakemake_version": {"a": a.snakemake_version, "b": b.snakemake_version},
        }
        return {
            "a": a.id,
            "b": b.id,
            "config": changed(config_a, config_b),
            "code": {k: v for k, v in code.items() if v["a"] != v["b"]},
            "packages": changed(packages_a, packages_b),
            "artifacts": changed(artifacts_a, artifacts_b),
        }
