"""Job sidecars: each job writes its own provenance record next to its first output.

The Snakemake head process records every job through the logger plugin; if the head dies
(killed, node lost, walltime), jobs already submitted to Slurm carry on and nothing would
record them. So every job also writes ``<first output>.prov.json`` itself: who ran it (run
id, rule, wildcards, attempt), where (host, Slurm job id, partition, account, nodes, GPUs),
when, how it ended, the inputs it saw (path, size, mtime) and the outputs it left, hashed.
``euroflow prov ingest`` replays sidecars into the database idempotently, and the head uses
them as they arrive (Slurm fields, and output digests it need not compute again).

:func:`record_job_sidecars` wraps the run function of every rule at parse time, in every
process that parses the Snakefile (the head, and each Slurm job's own Snakemake), so no
rule has to remember anything. The file holds all attempts of the job in this run
(Snakemake re-runs a failed job under the same output), rewritten atomically each time.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from euroflow.errors import EuroflowError
from euroflow.provenance.hashing import DigestCache, observe

SUFFIX = ".prov.json"
FORMAT = "euroflow-job-sidecar/1"
RUN_ID_VARIABLE = "EUROFLOW_RUN_ID"
RUN_ROOT_VARIABLE = "EUROFLOW_RUN_ROOT"

# Slurm's job environment -> sidecar field (https://slurm.schedmd.com/sbatch.html#SECTION_OUTPUT-ENVIRONMENT-VARIABLES)
SLURM_VARIABLES = {
    "SLURM_JOB_ID": "slurm_jobid",
    "SLURM_ARRAY_JOB_ID": "array_job_id",
    "SLURM_ARRAY_TASK_ID": "array_index",
    "SLURM_JOB_PARTITION": "partition",
    "SLURM_JOB_ACCOUNT": "account",
    "SLURM_JOB_QOS": "qos",
    "SLURM_JOB_NODELIST": "nodelist",
    "SLURM_JOB_NUM_NODES": "num_nodes",
    "SLURM_GPUS_ON_NODE": "gpus_on_node",
    "SLURM_RESTART_COUNT": "restart_count",
}


_INTEGER_FIELDS = {"array_index", "num_nodes", "gpus_on_node", "restart_count"}


def sidecar_path(outputs: list[str], logs: list[str]) -> Path | None:
    """Where a job's sidecar lives: next to its first output (or log); None for a job with neither."""
    anchors = [str(p) for p in [*outputs, *logs]]
    return Path(anchors[0] + SUFFIX) if anchors else None


def slurm_fields(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The Slurm allocation this process runs in, from its environment; None outside Slurm."""
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in environ:
        return None
    fields: dict[str, Any] = {}
    for variable, name in SLURM_VARIABLES.items():
        value = environ.get(variable)
        if value is None:
            continue
        fields[name] = int(value) if name in _INTEGER_FIELDS and value.isdigit() else value
    if "array_job_id" in fields and "array_index" in fields:
        fields["slurm_jobid"] = f"{fields['array_job_id']}_{fields['array_index']}"
    if "gpus_on_node" in fields:
        fields["gpus"] = fields["gpus_on_node"] * int(fields.get("num_nodes") or 1)
    return fields


def file_stat(path: str) -> dict[str, Any]:
    """What a job saw at ``path`` without reading it: kind, size and mtime (ingest compares them)."""
    try:
        st = os.stat(path)
    except OSError:
        return {"path": os.path.abspath(path), "kind": "missing"}
    kind = "directory" if os.path.isdir(path) else "file"
    return {"path": os.path.abspath(path), "kind": kind, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _observed(paths: list[str], cache: DigestCache) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        o = observe(path, cache)
        out.append({"path": o.path, "kind": o.kind, "sha256": o.sha256, "size": o.size})
    return out


def read(path: str | os.PathLike) -> dict[str, Any]:
    """A sidecar, checked: a clear one-line error names the file and what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EuroflowError(f"{path}: cannot read job sidecar: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EuroflowError(f"{path}: not a job sidecar (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EuroflowError(f"{path}: not a job sidecar (key 'format' must be {FORMAT!r})")
    attempts = data.get("attempts")
    if not isinstance(attempts, list) or not attempts:
        raise EuroflowError(f"{path}: key 'attempts' must be a non-empty list")
    for i, attempt in enumerate(attempts):
        for key, kind in (("rule", str), ("wildcards", dict), ("attempt", int), ("started_at", (int, float)), ("status", str)):
            if not isinstance(attempt.get(key) if isinstance(attempt, dict) else None, kind):
                raise EuroflowError(f"{path}: attempts[{i}].{key} is missing or of the wrong type")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    from euroflow.atomic import write_text

    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


class JobRecord:
    """One attempt of one job, written to its sidecar when it starts and when it ends."""

    def __init__(self, path: Path, *, rule: str, wildcards: dict[str, str], jobid: int | None,
                 inputs: list[str], outputs: list[str], logs: list[str], run_id: str | None,
                 allocations: str | None = None) -> None:
        self.path = path
        self.outputs, self.logs = outputs, logs
        self.allocations = allocations
        previous = []
        if path.exists():
            try:
                previous = read(path)["attempts"]
            except EuroflowError:
                previous = []  # a damaged sidecar of an earlier run: start afresh
        # attempts of the same job in the same run are consecutive: count them
        same_run = [a for a in previous if a.get("run_id") == run_id] if run_id else []
        self.data = {"format": FORMAT, "attempts": same_run}
        self.attempt: dict[str, Any] = {
            "run_id": run_id,
            "rule": rule,
            "wildcards": wildcards,
            "snakemake_jobid": jobid,
            "attempt": len(same_run) + 1,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "workdir": os.getcwd(),
            "run_root": os.environ.get(RUN_ROOT_VARIABLE),
            "started_at": time.time(),
            "ended_at": None,
            "status": "running",
            "error": None,
            "slurm": slurm_fields(),
            "inputs": [file_stat(p) for p in inputs],
            "outputs": [],
            "logs": [],
            "digests": [],
        }
        self.data["attempts"].append(self.attempt)

    def start(self) -> None:
        _write(self.path, self.data)

    def end(self, error: BaseException | None) -> None:
        cache = DigestCache()
        self.attempt.update(
            ended_at=time.time(),
            status="failed" if error is not None else "success",
            error=None if error is None else f"{error.__class__.__name__}: {error}"[:4000],
            outputs=_observed(self.outputs, cache),
            logs=_observed(self.logs, cache),
            digests=cache.export(),
        )
        if self.allocations:
            self.attempt["slurm_allocations"] = read_allocations(self.allocations)
        _write(self.path, self.data)


def read_allocations(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The Slurm allocations a job submitted itself (one JSON line each, e.g. the pretrain
    launcher's), one per (job id, restart); unreadable lines are skipped, a missing file is none."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("slurm_jobid"):
            found[(str(entry["slurm_jobid"]), int(entry.get("restart_count") or 0))] = entry
    return [found[key] for key in sorted(found, key=lambda k: (k[0], k[1]))]


def _wrap(run_func: Callable) -> Callable:
    signature = inspect.signature(run_func)

    @functools.wraps(run_func)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs).arguments
        outputs = [str(p) for p in bound["output"]]
        logs = [str(p) for p in bound["log"]]
        path = sidecar_path(outputs, logs)
        if path is None:
            return run_func(*args, **kwargs)
        record = JobRecord(
            path,
            rule=str(bound["rule"]),
            wildcards={str(k): str(v) for k, v in dict(bound["wildcards"].items()).items()},
            jobid=bound.get("jobid"),
            inputs=[str(p) for p in bound["input"]],
            outputs=outputs,
            logs=logs,
            run_id=os.environ.get(RUN_ID_VARIABLE),
            allocations=getattr(bound.get("params"), "slurm_allocations", None),
        )
        record.start()
        try:
            result = run_func(*args, **kwargs)
        except BaseException as exc:
            record.end(exc)
            raise
        record.end(None)
        return result

    recorded.euroflow_sidecar = True  # type: ignore[attr-defined]
    return recorded


def record_job_sidecars(workflow: Any) -> None:
    """Make every rule of ``workflow`` (call after the last include) write its job sidecar."""
    for rule in workflow.rules:
        if rule.run_func is not None and not getattr(rule.run_func, "euroflow_sidecar", False):
            rule.run_func = _wrap(rule.run_func)
