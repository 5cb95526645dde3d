"""Complete the Slurm allocations of a run from Slurm accounting (``sacct``).

A job's sidecar knows its Slurm job id, partition, account and nodes; how it ended (state,
exit code), how long it ran, its peak memory and the energy Slurm measured are only known to
accounting afterwards. The head calls :func:`fill_from_sacct` when a run ends (and ``prov
ingest`` after replaying sidecars); where ``sacct`` is absent (a laptop) nothing happens.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from euroflow.provenance import recorder
from euroflow.provenance.models import Job, SlurmJob

FIELDS = ("JobID", "State", "ExitCode", "ElapsedRaw", "MaxRSS", "ConsumedEnergyRaw", "AllocTRES", "NNodes",
          "Partition", "Account", "QOS", "NodeList")
SACCT_TIMEOUT_S = 120
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_GPUS = re.compile(r"(?:^|,)gres/gpu(?::[^=,]+)?=(\d+)")


def _bytes(value: str) -> int | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", value.strip())
    return int(float(match[1]) * _UNITS[match[2]]) if match else None


def _int(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def parse_sacct(text: str) -> dict[str, list[dict[str, Any]]]:
    """``sacct --duplicates --parsable2 --noheader --format=<FIELDS>`` output -> job id -> one
    record per run of that id, in order (a requeued job keeps its id: run i has restart_count i).

    The allocation's own line gives state, exit code, elapsed time, nodes, partition, account
    and energy; its steps (``123.batch``, ``123.0``), printed after it, give the peak RSS (the
    largest over steps).
    """
    allocations: dict[str, list[dict[str, Any]]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        values = line.split("|")
        if len(values) != len(FIELDS):
            continue
        row = dict(zip(FIELDS, values))
        jobid, _, step = row["JobID"].partition(".")
        rss = _bytes(row["MaxRSS"]) if row["MaxRSS"] else None
        if step:
            if current is not None and current["slurm_jobid"] == jobid and rss is not None:
                current["max_rss_bytes"] = max(current.get("max_rss_bytes") or 0, rss)
            continue
        gpus = _GPUS.search(row["AllocTRES"])
        energy = _int(row["ConsumedEnergyRaw"])
        runs = allocations.setdefault(jobid, [])
        current = {
            "slurm_jobid": jobid,
            "restart_count": len(runs),
            "state": row["State"].split()[0] if row["State"] else None,  # "CANCELLED by 1234"
            "exit_code": row["ExitCode"] or None,
            "elapsed_s": float(row["ElapsedRaw"]) if row["ElapsedRaw"].isdigit() else None,
            "energy_j": float(energy) if energy else None,  # 0: the cluster does not measure energy
            "gpus": int(gpus[1]) if gpus else None,
            "num_nodes": _int(row["NNodes"]),
            "partition": row["Partition"] or None,
            "account": row["Account"] or None,
            "qos": row["QOS"] or None,
            "nodelist": row["NodeList"] if row["NodeList"] not in ("", "None assigned") else None,
        }
        if rss is not None:
            current["max_rss_bytes"] = rss
        runs.append(current)
    return allocations


def query_sacct(slurm_jobids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Accounting records of these allocations; empty where sacct is not installed or fails."""
    if not slurm_jobids or shutil.which("sacct") is None:
        return {}
    command = ["sacct", "--duplicates", "--parsable2", "--noheader", f"--format={','.join(FIELDS)}", f"--jobs={','.join(slurm_jobids)}"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=SACCT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_sacct(proc.stdout) if proc.returncode == 0 else {}


def fill_from_sacct(session: Session, run_id: str) -> int:
    """Complete every Slurm allocation of the run that accounting knows; returns how many."""
    rows = session.execute(
        select(SlurmJob.job_id, SlurmJob.slurm_jobid, SlurmJob.restart_count)
        .join(Job, Job.id == SlurmJob.job_id)
        .where(Job.run_id == run_id)
    ).all()
    accounting = query_sacct(sorted({slurm_jobid for _, slurm_jobid, _ in rows}))
    filled = 0
    for job_id, slurm_jobid, restart in rows:
        runs = accounting.get(slurm_jobid, [])
        if restart < len(runs):
            recorder.record_slurm(session, job_id, runs[restart])
            filled += 1
    return filled
