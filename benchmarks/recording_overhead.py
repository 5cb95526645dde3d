"""What recording provenance costs a job: Snakemake with the euroflow logger and job sidecars
vs plain Snakemake (the peer), same workflow, same machine, in one run.

    python benchmarks/recording_overhead.py [--jobs 40] [--job-seconds 1] [--output-mb 16] [--rounds 3]

Each job sleeps ``--job-seconds`` and writes ``--output-mb`` of data (which both the job's
sidecar and the head hash, as in a real run) and a log. Overhead per job is the difference of
the wall times divided by the number of jobs; it is then set against a 60 s job, the goal
being < 2 %. The last line printed is one line of JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_PERCENT = 2.0
REFERENCE_JOB_S = 60.0

SNAKEFILE = r'''
N = int(config["jobs"])
RECORD = bool(config["record"])
if RECORD:
    from euroflow.provenance import announce_run_context
    from euroflow.provenance.sidecar import record_job_sidecars

    onstart:
        announce_run_context(config, db="prov.sqlite")

rule all:
    input: expand("out/{i}.bin", i=range(N))

rule work:
    input: "seed.bin"
    output: "out/{i}.bin"
    log: "logs/{i}.log"
    shell: "sleep {config[job_seconds]}; head -c {config[output_bytes]} /dev/urandom > {output}; echo done > {log}"

if RECORD:
    record_job_sidecars(workflow)
'''


def run(workdir: Path, record: bool, jobs: int, job_seconds: float, output_mb: float, cores: int) -> float:
    for name in ("out", "logs", ".snakemake", "prov.sqlite"):
        target = workdir / name
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    cmd = [
        str(Path(sys.executable).with_name("snakemake")), "--cores", str(cores), "--quiet", "rules",
        "--config", f"jobs={jobs}", f"record={int(record)}", f"job_seconds={job_seconds}",
        f"output_bytes={int(output_mb * 2**20)}",
    ]
    if record:
        cmd += ["--logger", "euroflow"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake (record={record}) failed:\n{proc.stderr[-3000:]}")
    if record:
        import sqlite3

        con = sqlite3.connect(workdir / "prov.sqlite")
        recorded = con.execute("select count(*) from jobs where rule = 'work' and status = 'success'").fetchone()[0]
        con.close()
        if recorded != jobs:
            raise SystemExit(f"only {recorded} of {jobs} jobs recorded")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--output-mb", type=float, default=16.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain/recorded rounds (median)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="euroflow-overhead-") as tmp:
        workdir = Path(tmp)
        (workdir / "Snakefile").write_text(SNAKEFILE)
        (workdir / "seed.bin").write_bytes(b"x" * 1024)
        plain, recorded = [], []
        for _ in range(args.rounds):
            plain.append(run(workdir, False, args.jobs, args.job_seconds, args.output_mb, args.cores))
            recorded.append(run(workdir, True, args.jobs, args.job_seconds, args.output_mb, args.cores))

    plain_s, recorded_s = statistics.median(plain), statistics.median(recorded)
    per_job_ms = (recorded_s - plain_s) / args.jobs * 1000 * args.cores  # jobs run cores at a time
    percent = per_job_ms / 1000 / REFERENCE_JOB_S * 100
    rows = [
        ("plain Snakemake (peer)", plain_s, "-"),
        ("with euroflow logger + sidecars", recorded_s, "-"),
        ("overhead per job (ms)", per_job_ms / 1000, "-"),
        (f"share of a {REFERENCE_JOB_S:.0f} s job (%)", percent, f"< {GOAL_PERCENT}"),
    ]
    print(f"{args.jobs} jobs x ({args.job_seconds} s + {args.output_mb} MiB output), {args.cores} cores, median of {args.rounds}")
    print(f"{'':34}  {'value':>10}  goal")
    for name, value, goal in rows:
        shown = f"{value * 1000:.1f}" if name.startswith("overhead") else f"{value:.2f}"
        print(f"{name:34}  {shown:>10}  {goal}")
    print(f"recorded/plain wall time: {recorded_s / plain_s:.3f}x")
    print(json.dumps({
        "jobs": args.jobs, "job_seconds": args.job_seconds, "output_mb": args.output_mb, "cores": args.cores,
        "plain_s": round(plain_s, 2), "recorded_s": round(recorded_s, 2), "ratio": round(recorded_s / plain_s, 4),
        "overhead_per_job_ms": round(per_job_ms, 1), "percent_of_60s_job": round(percent, 3),
        "plain_runs_s": [round(t, 2) for t in plain], "recorded_runs_s": [round(t, 2) for t in recorded],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
