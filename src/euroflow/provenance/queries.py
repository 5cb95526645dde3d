"""Read provenance records as plain JSON-ready dicts (times: ISO 8601, UTC)."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from euroflow.errors import EuroflowError
from euroflow.paths import artifact_category
from euroflow.provenance.lookup import iso_utc, run_summary
from euroflow.provenance.locations import current_root, on_disk
from euroflow.provenance.models import Artifact, Generated, Job, Run, RunLocation, SlurmJob, Used



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


def _edge(edge: Used | Generated, root: str | None) -> dict[str, Any]:
    a = edge.artifact
    return {
        "role": edge.role,
        "path": on_disk(a.path, root),
        "stored_path": a.path,
        "sha256": a.sha256,
        "size": a.size,
        "kind": a.kind,
        # rows recorded before schema 0004 have none: the path tells
        "category": a.category or artifact_category(a.path),
        "artifact_id": a.id,
    }


SLURM_FIELDS = (
    "slurm_jobid", "restart_count", "array_index", "partition", "account", "qos", "nodelist", "num_nodes", "gpus",
    "state", "exit_code", "elapsed_s", "max_rss_bytes", "energy_j", "log_path", "outcome",
)


def _slurm_dict(slurm: SlurmJob) -> dict[str, Any]:
    return {name: getattr(slurm, name) for name in SLURM_FIELDS}


def _job_dict(job: Job, with_edges: bool, root: str | None = None) -> dict[str, Any]:
    out = {
        "id": job.id,
        "snakemake_jobid": job.snakemake_jobid,
        "attempt": job.attempt,
        "rule": job.rule,
        "wildcards": job.wildcards,
        "status": job.status,
        "started_at": iso_utc(job.started_at),
        "ended_at": iso_utc(job.ended_at),
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
        out["used"] = [_edge(e, root) for e in job.used]
        out["generated"] = [_edge(e, root) for e in job.generated]
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


def run_detail(engine: Engine, run_id: str, root: str | None = None) -> dict[str, Any]:
    """A run with its packages, config, jobs (with used/generated artifacts) and the
    distinct artifacts it touched. Artifact paths are where the files are now: under ``root``
    (default: the run's newest recorded location, else where it was written)."""
    with Session(engine) as session:
        run_id = resolve_run_id(session, run_id)
        run = session.get(Run, run_id)
        root = os.path.abspath(root) if root else current_root(run)
        jobs = _jobs(session, run_id)
        n_failed = sum(1 for j in jobs if j.status == "failed")
        detail = run_summary({c.key: getattr(run, c.key) for c in Run.__table__.columns}, len(jobs), n_failed)
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
            root=root,
            written_root=run.root,
            locations=[{"root": loc.root, "recorded_at": iso_utc(loc.recorded_at), "checked": loc.checked, "note": loc.note}
                       for loc in run.locations],
            packages={p.name: p.version for p in run.packages},
            environments=[
                {
                    "captured_at": iso_utc(e.captured_at),
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
        detail["jobs"] = [_job_dict(job, with_edges=True, root=root) for job in jobs]
        artifacts: dict[int, dict[str, Any]] = {}
        for job in detail["jobs"]:
            for edge in job["used"] + job["generated"]:
                artifacts.setdefault(edge["artifact_id"], {k: v for k, v in edge.items() if k != "role"})
        detail["artifacts"] = sorted(artifacts.values(), key=lambda a: (a["path"], a["artifact_id"]))
        return detail


def integrity_problem(engine: Engine) -> str | None:
    """SQLite's own check of the database file (pages, indexes); None when it is sound."""
    from sqlalchemy.exc import DatabaseError

    try:
        with engine.connect() as conn:
            rows = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check(5)")]
    except DatabaseError as exc:  # damaged beyond what the check can walk
        return str(exc.orig)
    return None if rows == ["ok"] else "; ".join(rows)


def verify(engine: Engine, run_id: str, root: str | None = None) -> dict[str, Any]:
    """Recompute the digest of every file and directory a run read or wrote; report what changed.
    The run's results tree is looked for under ``root`` (default: its newest recorded location);
    files outside it (the shared data bundle, crawl shards) at their recorded paths. The database
    itself is checked first (``PRAGMA integrity_check``): verifying against a damaged record proves nothing."""
    from euroflow.provenance.hashing import DigestCache, observe

    problem = integrity_problem(engine)
    if problem:
        raise EuroflowError(f"{engine.url.database}: the provenance database fails SQLite's integrity check ({problem[:300]}); "
                            "restore it from a backup, or rebuild the records of a run with prov ingest")
    with Session(engine) as session:
        run_id = resolve_run_id(session, run_id)
        run = session.get(Run, run_id)
        root = os.path.abspath(root) if root else current_root(run)
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
        inside = 0
        for a in artifacts:
            path = on_disk(a.path, root)
            inside += not os.path.isabs(a.path)
            now = observe(path, cache)
            status = "missing" if now.kind == "missing" else "ok" if now.sha256 == a.sha256 else "changed"
            checked.append({"path": path, "stored_path": a.path, "status": status, "recorded_sha256": a.sha256,
                            "current_sha256": now.sha256})
        problems = [c for c in checked if c["status"] != "ok"]
        return {"run": run_id, "root": root, "written_root": run.root, "checked": len(checked), "inside_root": inside,
                "outside_root": len(checked) - inside, "ok": not problems, "problems": problems}


def relocate(engine: Engine, run_id: str, root: str, *, note: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Record ``root`` as where run ``run_id``'s results tree now is, once every artifact of the run
    verifies there (``prov verify --root``); a tree that does not verify is refused, naming the first problem."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise EuroflowError(f"{root}: no such directory")
    result = verify(engine, run_id, root)
    if not result["ok"]:
        first = result["problems"][0]
        raise EuroflowError(
            f"{root}: {len(result['problems'])} of {result['checked']} artifacts of run {result['run']} do not verify there "
            f"(first: {first['path']} {first['status']}); not recorded"
        )
    with Session(engine) as session, session.begin():
        session.add(RunLocation(run_id=result["run"], root=root, recorded_at=now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                                checked=result["checked"], note=note))
    return {"run": result["run"], "root": root, "checked": result["checked"], "inside_root": result["inside_root"]}


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
    base = run.root or run.workdir
    return {path if not os.path.isabs(path) else os.path.relpath(path, base) if base else path: sha for path, sha in rows}


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
