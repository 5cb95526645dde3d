"""``euroflow prov ingest``: replay job sidecars into the database, idempotently.

Used when the Snakemake head died while jobs ran on (or finished under) Slurm, or to
merge a run recorded elsewhere. A job attempt is identified by (run, rule, wildcards,
attempt): one already recorded is completed (end state, outputs, host, Slurm allocation),
never duplicated, so ingesting the same sidecars twice, or after a killed ingest, changes
nothing the second time. Every sidecar is read and checked before anything is written.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from euroflow.errors import EuroflowError
from euroflow.provenance import recorder, sidecar, slurm_accounting
from euroflow.provenance.hashing import DigestCache, Observation, observe
from euroflow.provenance.models import Job, Run

BATCH = 200  # sidecars per transaction: few fsyncs, and a killed ingest loses one batch at most
SIDECAR_ONLY = "recorded from job sidecars only: the Snakemake head process did not record this run"


def find_sidecars(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Sidecar files given directly or found under the given directories, in path order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.rglob(f"*{sidecar.SUFFIX}"))
        elif path.is_file():
            found.append(path)
        else:
            raise EuroflowError(f"{path}: no such file or directory")
    return found


def _read_all(files: list[Path]) -> list[tuple[Path, list[dict[str, Any]]]]:
    loaded = []
    for path in files:
        attempts = sidecar.read(path)["attempts"]
        for i, attempt in enumerate(attempts):
            if not isinstance(attempt.get("run_id"), str):
                raise EuroflowError(f"{path}: attempts[{i}].run_id is missing (the job ran outside a recorded run)")
        loaded.append((path.absolute(), attempts))
    return loaded


def _key(a: dict[str, Any]) -> tuple:
    return a["rule"], json.dumps(a["wildcards"], sort_keys=True), a["attempt"]


class _RunIndex:
    """The jobs of one run, loaded once per transaction: (rule, wildcards, attempt) -> job id,
    and the Snakemake job ids taken."""

    def __init__(self, session: Session, run_id: str) -> None:
        self.jobs: dict[tuple, tuple[int, str]] = {}
        self.taken: set[tuple[int, int]] = set()
        self.lowest = 0
        rows = session.execute(
            select(Job.id, Job.rule, Job.wildcards, Job.attempt, Job.status, Job.snakemake_jobid).where(Job.run_id == run_id)
        )
        for job_id, rule, wildcards, attempt, status, jobid in rows:
            self.add(job_id, rule, wildcards, attempt, status, jobid)

    def add(self, job_id: int, rule: str, wildcards: dict, attempt: int, status: str, jobid: int) -> None:
        self.jobs[(rule, json.dumps(wildcards, sort_keys=True), attempt)] = (job_id, status)
        self.taken.add((jobid, attempt))
        self.lowest = min(self.lowest, jobid)

    def free_jobid(self, a: dict[str, Any]) -> int:
        """The job's Snakemake id if no other job of the run holds it for this attempt, else a
        negative one (ids of jobs known only from sidecars)."""
        wanted = a.get("snakemake_jobid")
        if isinstance(wanted, int) and (wanted, a["attempt"]) not in self.taken:
            return wanted
        return self.lowest - 1


def _inputs(a: dict[str, Any], cache: DigestCache) -> list[tuple[str, Observation]]:
    observed = []
    for entry in a.get("inputs") or []:
        path = entry["path"]
        now = {k: v for k, v in sidecar.file_stat(path).items() if k in ("kind", "size", "mtime_ns")}
        then = {k: entry.get(k) for k in ("kind", "size", "mtime_ns")}
        if entry.get("kind") in ("file", "directory") and now == then:
            observed.append(("input", observe(path, cache)))  # unchanged since the job read it
        else:  # gone or rewritten since: keep what is known, the digest is not
            observed.append(("input", Observation(path, entry.get("kind") or "missing", None, entry.get("size"))))
    return observed


def _products(a: dict[str, Any]) -> list[tuple[str, Observation]]:
    out = []
    for role, key in (("output", "outputs"), ("log", "logs")):
        for e in a.get(key) or []:
            out.append((role, Observation(e["path"], e["kind"], e.get("sha256"), e.get("size"))))
    return out


def _ingest_attempt(
    session: Session, path: Path, a: dict[str, Any], cache: DigestCache, counts: Counter, runs: dict[str, _RunIndex]
) -> None:
    started, ended = recorder.utc(a["started_at"]), recorder.utc(a["ended_at"]) if a.get("ended_at") else None
    run = session.get(Run, a["run_id"])
    if run is None:
        run = recorder.start_run(session, a["run_id"], started, workdir=a.get("workdir") or str(path.parent), root=a.get("run_root"))
        run.status, run.error = "incomplete", SIDECAR_ONLY
        counts["runs_created"] += 1
    elif run.error == SIDECAR_ONLY and started < run.started_at:
        run.started_at = started

    index = runs.get(a["run_id"])
    if index is None:
        index = runs[a["run_id"]] = _RunIndex(session, a["run_id"])
    known = index.jobs.get(_key(a))
    if known is None:
        jobid = index.free_jobid(a)
        job = recorder.start_job(
            session, a["run_id"], jobid, rule=a["rule"], started_at=started,
            wildcards=a["wildcards"], inputs=_inputs(a, cache), attempt=a["attempt"],
        )
        index.add(job.id, job.rule, job.wildcards, job.attempt, a["status"], jobid)
        job_id = job.id
        counts["jobs_created"] += 1
    elif known[1] not in ("running", "interrupted") or a["status"] == "running":
        recorder.apply_sidecar(session, known[0], a, str(path))
        counts["unchanged"] += 1
        return
    else:
        job_id = known[0]
        index.jobs[_key(a)] = (job_id, a["status"])
        counts["jobs_completed"] += 1
    if a["status"] == "success":
        recorder.finish_job(session, job_id, ended, _products(a))
    elif a["status"] == "failed":
        recorder.fail_job(session, job_id, ended, error=a.get("error"), outputs=_products(a))
    recorder.apply_sidecar(session, job_id, a, str(path))


def ingest(engine: Engine, paths: Iterable[str | os.PathLike], *, batch: int = BATCH) -> dict[str, int]:
    """Replay every sidecar under ``paths``; returns counts of what was created or completed."""
    loaded = _read_all(find_sidecars(paths))
    cache = DigestCache()
    for _, attempts in loaded:
        for a in attempts:
            cache.seed(a.get("digests") or [])
    counts: Counter = Counter(sidecars=len(loaded), attempts=sum(len(a) for _, a in loaded))
    for start in range(0, len(loaded), batch):
        with Session(engine) as session, session.begin():
            runs: dict[str, _RunIndex] = {}  # read inside the write transaction: no other writer interleaves
            for path, attempts in loaded[start : start + batch]:
                for a in attempts:
                    _ingest_attempt(session, path, a, cache, counts, runs)
    run_ids = sorted({a["run_id"] for _, attempts in loaded for a in attempts})
    with Session(engine) as session, session.begin():
        for run_id in run_ids:
            counts["slurm_accounted"] += slurm_accounting.fill_from_sacct(session, run_id)
        # a run whose head died on this host stays "running" no longer
        counts["runs_interrupted"] = len(recorder.interrupt_stale_runs(session, noticed_by="prov ingest", host=platform.node()))
    return {k: counts[k] for k in ("sidecars", "attempts", "runs_created", "jobs_created", "jobs_completed", "unchanged",
                                   "slurm_accounted", "runs_interrupted")}


REPLAYED = "recorded from job sidecars: the database stayed locked by another process until the run ended"


def settle_run(engine: Engine, run_id: str) -> str | None:
    """End a run that its head could not close (the database was locked): its status from its
    jobs' latest attempts (failed, incomplete when one never ended, else success)."""
    with Session(engine) as session, session.begin():
        run = session.get(Run, run_id)
        if run is None or run.status not in ("running", "incomplete"):
            return None
        latest: dict[tuple, Job] = {}
        for job in sorted(run.jobs, key=lambda j: (j.started_at, j.id)):
            latest[(job.rule, json.dumps(job.wildcards, sort_keys=True))] = job
        statuses = {job.status for job in latest.values()}
        run.status = "failed" if "failed" in statuses else "incomplete" if statuses - {"success"} else "success"
        ended = [job.ended_at for job in run.jobs if job.ended_at]
        run.ended_at = max(ended) if ended else run.started_at
        run.error = run.error if run.error and run.error != SIDECAR_ONLY else REPLAYED
        return run.status
