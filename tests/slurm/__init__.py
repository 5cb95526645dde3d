"""The local Slurm test cluster (tests/slurm/cluster/up.sh) for tests marked ``@pytest.mark.slurm``.

``make test`` brings the cluster up before pytest and down after it; ``make slurm-up`` /
``make slurm-down`` do it by hand. A test marked ``slurm`` gets the session fixture
``slurm_cluster`` (through the autouse ``slurm_marker_guard``), which checks that the node
answers and that ``sacct`` works: if not, the test fails under ``CI=true`` and skips otherwise.

Tests outside ``tests/slurm/`` use it by importing the two fixtures into their conftest.py::

    from slurm import slurm_cluster, slurm_marker_guard  # noqa: F401  (pytest fixtures)

(``tests/`` is on ``sys.path`` through the root conftest), then marking tests ``@pytest.mark.slurm``
and asking for ``slurm_cluster`` where they want its helpers (``env`` for subprocesses, ``sbatch``,
``wait``, ``sacct``, ``release``, ``profile``, ``account``, ``partition``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = Path(__file__).resolve().parent / "cluster"
PROFILE = REPO_ROOT / "profiles" / "slurm-ci"
NODE = "localhost"
PARTITION = "debug"
ACCOUNT = "euroflow"
READY_STATES = ("idle", "mix", "alloc")
# sacct states after which a job does not change any more (unless requeued)
END_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                        "OUT_OF_MEMORY", "PREEMPTED", "REQUEUED", "TIMEOUT"})
SKIP_MARK = "Slurm cluster not up"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _run(*cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def cluster_problem() -> str | None:
    """Why the local cluster cannot take jobs, or None when it can (node ready, sacct answers)."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return "the Slurm client commands (sinfo, sacct) are not installed"
    try:
        sinfo = _run("sinfo", "-h", "-N", "-o", "%N %t")
        if sinfo.returncode != 0:
            return f"`sinfo` failed: {' '.join((sinfo.stderr or sinfo.stdout).split())[:300]}"
        states = dict(line.split(None, 1) for line in sinfo.stdout.splitlines() if len(line.split()) == 2)
        if states.get(NODE) not in READY_STATES:
            return f"node {NODE} is {states.get(NODE, 'missing')!r} in `sinfo -N` (want one of {', '.join(READY_STATES)})"
        sacct = _run("sacct", "-n", "-X", "-o", "JobID")
        if sacct.returncode != 0:
            return f"`sacct` failed (accounting down?): {' '.join((sacct.stderr or sacct.stdout).split())[:300]}"
    except subprocess.TimeoutExpired as exc:
        return f"`{' '.join(exc.cmd)}` did not answer within {exc.timeout:.0f} s"
    return None


@dataclass(frozen=True)
class SlurmCluster:
    """The running test cluster, with small helpers around sbatch/sacct/scontrol."""

    root: Path
    node: str = NODE
    partition: str = PARTITION
    account: str = ACCOUNT
    profile: Path = PROFILE
    end_states: frozenset = field(default=END_STATES, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process that submits here (snakemake, submitit): this process's, without
        inherited SLURM_*/SBATCH_*/SRUN_*/SALLOC_* settings (pytest may itself run inside an allocation),
        and SLURM_CONF at the default path, where up.sh links the cluster's slurm.conf."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = "/etc/slurm/slurm.conf"
        return env

    def sbatch(self, *args: str, cwd: Path | str | None = None) -> str:
        """Submit (``sbatch --parsable ARGS``) and return the job id."""
        proc = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, cwd=cwd,
                              timeout=30, check=False)
        assert proc.returncode == 0, f"sbatch {shlex.join(args)} failed: {proc.stderr.strip()}"
        return proc.stdout.strip().split(";")[0]

    def sacct(self, jobid: str, fields: tuple[str, ...] = ("State", "ExitCode", "ElapsedRaw")) -> dict[str, str]:
        """The allocation's accounting record (``sacct -X``), empty while slurmdbd has not got it yet."""
        proc = _run("sacct", "-X", "-n", "-P", "-j", str(jobid), "-o", ",".join(fields))
        assert proc.returncode == 0, f"sacct -j {jobid} failed: {proc.stderr.strip()}"
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if not lines:
            return {}
        record = dict(zip(fields, lines[-1].split("|")))
        if "State" in record:  # "CANCELLED by 0" -> "CANCELLED"
            record["State"] = record["State"].split()[0] if record["State"] else ""
        return record

    def wait(self, jobid: str, timeout: float = 60,
             fields: tuple[str, ...] = ("State", "ExitCode", "ElapsedRaw")) -> dict[str, str]:
        """Poll sacct until the job has ended; its record. Fails the test after ``timeout`` s.

        slurmdbd fills a record in steps (a just-ended job can show an empty Partition for a
        moment): after the end, it waits up to 5 s more for every asked field to be non-empty."""
        fields = tuple(dict.fromkeys(("State", *fields)))
        deadline = time.monotonic() + timeout
        ended_at = None
        record: dict[str, str] = {}
        while time.monotonic() < deadline:
            record = self.sacct(jobid, fields)
            if record.get("State") in self.end_states:
                ended_at = ended_at or time.monotonic()
                if all(record.get(f) for f in fields) or time.monotonic() - ended_at > 5:
                    return record
            time.sleep(0.2)
        pytest.fail(f"Slurm job {jobid} did not end within {timeout:.0f} s (last sacct record: {record})")

    def release(self, jobid: str) -> None:
        """Start a (requeued, held back ~120 s by BeginTime) job now."""
        proc = _run("scontrol", "update", f"jobid={jobid}", "StartTime=now")
        assert proc.returncode == 0, f"scontrol update jobid={jobid} StartTime=now failed: {proc.stderr.strip()}"


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The local Slurm cluster; fails (CI=true) or skips the test when it does not answer."""
    problem = cluster_problem()
    if problem is not None:
        message = (f"{SKIP_MARK}: {problem}. Run `make slurm-up` (needs root on Debian; "
                   f"bash tests/slurm/cluster/up.sh), or `make test`, which brings it up")
        if in_ci():
            pytest.fail(f"{message} [CI=true: the slurm tests must run, never skip]", pytrace=False)
        pytest.skip(message)
    return SlurmCluster(root=Path(os.environ.get("EUROFLOW_SLURM_ROOT", "/tmp/euroflow-slurm")))


@pytest.fixture(autouse=True)
def slurm_marker_guard(request: pytest.FixtureRequest) -> None:
    """Every test marked ``slurm`` needs the cluster, whether or not it asks for ``slurm_cluster``."""
    if request.node.get_closest_marker("slurm") is not None:
        request.getfixturevalue("slurm_cluster")


def report_skips(terminalreporter) -> None:
    """A loud line at the end of the run when slurm tests skipped because the cluster was not up."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIP_MARK in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} slurm test(s) SKIPPED: {SKIP_MARK}", red=True, bold=True)
        terminalreporter.write_line("bring it up with `make slurm-up` (root on Debian), then run `pytest -m slurm`")
