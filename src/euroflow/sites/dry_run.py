"""The jobs a profile would run, with the resources Snakemake gives them: a forced dry run of the
workflow (``snakemake -n -F --profile …``) whose job records are collected instead of printed.

Run as ``python -m euroflow.sites.dry_run OUT.json SNAKEMAKE_ARGS…``; Snakemake's own output goes
to stderr. A subprocess, because Snakemake's command line keeps global state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from euroflow.config import REPO_ROOT
from euroflow.errors import EuroflowError


class JobInfoCollector(logging.Handler):
    """Snakemake's ``job_info`` records of a run (a dry run logs one per planned job): rule,
    wildcards, threads, resources, and the shell command, inputs, outputs and logs."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.jobs: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(getattr(record, "event", "")).endswith("job_info"):
            resources = getattr(record, "resources", None) or {}
            self.jobs.append(
                {
                    "rule": record.rule_name,
                    "wildcards": dict(getattr(record, "wildcards", None) or {}),
                    "threads": getattr(record, "threads", 1),
                    "resources": {k: v for k, v in dict(resources.items()).items() if not k.startswith("_")},
                    "local": bool(getattr(record, "local", False)),
                    "shellcmd": getattr(record, "shellcmd", None),
                    "input": [str(f) for f in getattr(record, "input", None) or []],
                    "output": [str(f) for f in getattr(record, "output", None) or []],
                    "log": [str(f) for f in getattr(record, "log", None) or []],
                }
            )


def _main(out: str, argv: list[str]) -> int:
    from snakemake.cli import main as snakemake_main

    collector = JobInfoCollector()
    logging.getLogger("snakemake").addHandler(collector)
    status = 0
    with contextlib.redirect_stdout(sys.stderr):
        try:
            snakemake_main(["--dry-run", "--forceall", *argv])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    if status:
        return status
    Path(out).write_text(json.dumps(collector.jobs, default=str), encoding="utf-8")
    return 0


def planned_jobs(profile_dir: str | os.PathLike, configfiles: list[str], *, workdir: str | os.PathLike,
                 environ: dict[str, str] | None = None, snakefile: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every job of the workflow (``snakefile``: by default this installation's) under ``profile_dir``
    (rule, wildcards, threads, resources, shell command)."""
    snakefile = Path(snakefile or Path(REPO_ROOT) / "Snakefile").resolve()
    argv = ["--snakefile", str(snakefile), "--profile", str(Path(profile_dir).resolve()), "--directory", str(workdir)]
    if configfiles:  # one flag: a repeated --configfile replaces the earlier ones
        argv += ["--configfile", *(str(Path(path).resolve()) for path in configfiles)]
    out = Path(workdir) / "planned_jobs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "euroflow.sites.dry_run", str(out), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(environ or {})},
        cwd=snakefile.parent,
    )
    if proc.returncode:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        ours = [line for line in lines if line.startswith("euroflow: error: ")]
        if ours:  # the workflow's own one-line refusal
            raise EuroflowError(f"dry run with {profile_dir} failed: {ours[-1].removeprefix('euroflow: error: ')}")
        at = next((i for i in range(len(lines) - 1, -1, -1) if "Error" in lines[i] or "Exception" in lines[i]), None)
        reason = " ".join(lines[at:at + 3]) if at is not None else (lines[-1] if lines else "no output")
        raise EuroflowError(f"dry run with {profile_dir} failed: {reason}")
    return json.loads(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    logging.getLogger("snakemake").setLevel(logging.DEBUG)
    sys.exit(_main(sys.argv[1], sys.argv[2:]))
