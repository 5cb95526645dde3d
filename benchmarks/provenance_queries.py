"""Time ``euroflow prov runs`` and ``euroflow prov lineage`` on a large provenance database.

    python benchmarks/provenance_queries.py [--jobs 100000] [--runs 20] [--db PATH] [--repeat 5]

Builds (or reuses, if ``--db`` exists) a synthetic provenance database shaped like the real
DAG, through ``open_db`` (real migrations and pragmas) and the ORM models: per run, per
language and shard ``demo_shard`` + ``clean_shard`` jobs, a ``blend``, ``train_tokenizer``
and ``tokenizer_parity``, ``tokenize_language`` per language, ``pretrain``, ``export_hf``,
``gguf`` x3, ``int8``, ``quantization_quality`` and the evaluation jobs; about three artifacts
per job (outputs, log, benchmark), used/generated edges, failed attempts and retries, runs
sharing working directories (same paths, several contents) and deterministic raw shards
shared by several runs. Then times the queries in-process (warm, median) and the CLI as
subprocesses. The last line printed is one line of JSON with the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from euroflow.languages import LANGUAGES
from euroflow.provenance import lookup, queries
from euroflow.provenance.db import open_db
from euroflow.provenance.models import Artifact, Generated, Job, Run, RunPackage, SlurmJob, Used

GOAL_MS = 200.0
LANGS = list(LANGUAGES)
GGUF_TYPES = ("F16", "Q8_0", "Q4_0")
WORKDIRS = [f"/scratch/project_462000353/euroflow-{name}" for name in ("alpha", "beta", "gamma", "delta")]
SOURCE_ROOT = "/scratch/project_462000353/shared/hplt-v2"
# jobs per run that do not depend on the shard count: tokenize + bits_per_byte per language, and
# blend, train_tokenizer, tokenizer_parity, pretrain, export_hf, gguf x3, int8, quality, mc, report
FIXED_JOBS = 2 * len(LANGS) + 12
RETRY_RATE = 0.01


def _sha(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


class Builder:
    """Accumulates rows with explicit ids; ``flush`` bulk-inserts them (executemany)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.artifact_ids: dict[tuple[str, str | None], int] = {}
        self.next_job_id = 1
        self.rows: dict[type, list[dict[str, Any]]] = {m: [] for m in (Run, RunPackage, Job, SlurmJob, Artifact, Used, Generated)}
        self.counts = {m: 0 for m in self.rows}

    def flush(self, session: Session) -> None:
        for model, rows in self.rows.items():  # parents before children (foreign keys are on)
            if rows:
                session.execute(insert(model), rows)
                self.counts[model] += len(rows)
                rows.clear()

    def artifact(self, path: str, content: str | None, kind: str, at: dt.datetime, size: int | None = None) -> int:
        sha = None if kind not in ("file", "directory") else _sha(path, content)
        key = (path, sha)
        found = self.artifact_ids.get(key)
        if found is not None:
            return found
        aid = len(self.artifact_ids) + 1
        self.artifact_ids[key] = aid
        if size is None and kind in ("file", "directory"):
            size = self.rng.randint(2_000, 400_000_000)
        self.rows[Artifact].append(
            {"id": aid, "path": path, "sha256": sha, "size": size, "kind": kind, "first_seen_at": at}
        )
        return aid


class RunBuilder:
    """One Snakemake invocation: jobs with consecutive Snakemake job ids and a running clock."""

    def __init__(self, b: Builder, run_id: str, workdir: str, started: dt.datetime, results: str) -> None:
        self.b, self.run_id, self.workdir, self.clock, self.results = b, run_id, workdir, started, results
        self.next_smk_jobid = 1
        self.failed_attempts = 0

    def path(self, rel: str) -> str:
        return f"{self.workdir}/{self.results}/{rel}"

    def job(
        self,
        rule: str,
        wildcards: dict[str, str],
        inputs: list[int],
        outputs: list[tuple[str, str, str | None, str]],
        *,
        log: str,
        benchmark: str | None = None,
        threads: int = 1,
        duration_s: float = 60.0,
        fail_attempts: int | None = None,
        final_failure: bool = False,
    ) -> list[int]:
        """Record every attempt of one job; outputs are (role, path, content key, kind).
        Returns the artifact ids of the outputs of the successful attempt (empty if none)."""
        b = self.b
        smk_jobid = self.next_smk_jobid
        self.next_smk_jobid += 1
        if fail_attempts is None:
            draw = b.rng.random()
            fail_attempts = 2 if draw < RETRY_RATE / 10 else 1 if draw < RETRY_RATE else 0
        attempts = fail_attempts + (0 if final_failure else 1)
        wc = ",".join(f"{k}={v}" for k, v in wildcards.items())
        produced: list[int] = []
        for attempt in range(1, attempts + 1):
            failed = attempt <= fail_attempts
            job_id = b.next_job_id
            b.next_job_id += 1
            started = self.clock
            ended = started + dt.timedelta(seconds=duration_s * (0.3 if failed else 1) * b.rng.uniform(0.8, 1.25))
            self.clock += dt.timedelta(seconds=b.rng.uniform(0.05, 2.0))
            exit_status = (-9 if rule in ("pretrain", "gguf") else 1) if failed else 0
            b.rows[Job].append(
                {
                    "id": job_id,
                    "run_id": self.run_id,
                    "snakemake_jobid": smk_jobid,
                    "attempt": attempt,
                    "rule": rule,
                    "wildcards": dict(wildcards),
                    "status": "failed" if failed else "success",
                    "started_at": started,
                    "ended_at": ended,
                    "exit_status": exit_status,
                    "error": (
                        f"Error in rule {rule}:\n    jobid: {smk_jobid}\n    log: {log} (check log file(s) for error details)\n"
                        f"Command 'set -euo pipefail; euroflow ... > {log} 2>&1' returned non-zero exit status {exit_status}."
                        if failed
                        else None
                    ),
                    "shellcmd": f"euroflow {rule.replace('_', ' ')} --config {self.workdir}/{self.results}/config.resolved.json"
                    + (f" --wildcards {wc}" if wc else "")
                    + f" > {log} 2>&1",
                    "threads": threads,
                    "is_local": rule in ("blend", "evaluation_report"),
                }
            )
            if rule not in ("blend", "evaluation_report"):
                gpus = 8 if rule in ("pretrain", "multiple_choice", "bits_per_byte") else 0
                b.rows[SlurmJob].append(
                    {
                        "job_id": job_id,
                        "slurm_jobid": str(7_000_000 + job_id),
                        "partition": "standard-g" if gpus else "small",
                        "account": "project_462000353",
                        "nodelist": f"nid{b.rng.randint(5000, 7999):06d}",
                        "num_nodes": 1,
                        "gpus": gpus,
                        "state": "FAILED" if failed else "COMPLETED",
                        "exit_code": f"{abs(exit_status)}:0",
                        "elapsed_s": (ended - started).total_seconds(),
                        "max_rss_bytes": b.rng.randint(1, 64) * 2**30,
                    }
                )
            for aid in inputs:
                b.rows[Used].append({"job_id": job_id, "artifact_id": aid, "role": "input", "at": started})
            edges = [] if failed else list(outputs)
            edges.append(("log", log, f"{self.run_id}/{attempt}", "file"))
            if benchmark is not None and not failed:
                edges.append(("benchmark", benchmark, f"{self.run_id}/{attempt}", "file"))
            for role, path, content, kind in edges:
                aid = b.artifact(path, content, kind, ended)
                b.rows[Generated].append({"job_id": job_id, "artifact_id": aid, "role": role, "at": ended})
                if role == "output":
                    produced.append(aid)
            if failed:
                self.failed_attempts += 1
        return produced


def build_run(b: Builder, index: int, n_runs: int, shards: int, started: dt.datetime) -> tuple[str, int]:
    """One run of the full pipeline; returns (run id, number of job rows). The run with index
    ``n_runs // 3`` fails in pretrain (three attempts) and stops there."""
    run_id = str(uuid.UUID(int=b.rng.getrandbits(128), version=4))
    group = index % len(WORKDIRS)
    workdir = WORKDIRS[group]
    config_variant = index // 8  # the data filters change every 8 runs: new clean shards
    r = RunBuilder(b, run_id, workdir, started, "results/eu35-1b")
    fails_in_pretrain = index == n_runs // 3
    first_job = b.next_job_id
    at = started

    stats, clean_by_lang = [], {}
    for lang in LANGS:
        clean_by_lang[lang] = []
        for s in range(shards):
            wc = {"lang": lang, "shard": f"{s:04d}"}
            source = b.artifact(f"{SOURCE_ROOT}/{lang}/{s:04d}.jsonl.zst", "hplt", "file", at)
            raw_path = r.path(f"data/raw/{lang}/{s:04d}.jsonl.zst")
            (raw,) = r.job(
                "demo_shard", wc, [source], [("output", raw_path, "deterministic", "file")],
                log=r.path(f"logs/demo_shard/{lang}/{s:04d}.log"),
                benchmark=r.path(f"benchmarks/demo_shard/{lang}/{s:04d}.tsv"), duration_s=40,
            )
            clean, stat = r.job(
                "clean_shard", wc, [raw],
                [
                    ("output", r.path(f"data/clean/{lang}/{s:04d}.jsonl.zst"), f"filters{config_variant}", "file"),
                    ("output", r.path(f"data/stats/{lang}/{s:04d}.json"), f"filters{config_variant}", "file"),
                ],
                log=r.path(f"logs/clean_shard/{lang}/{s:04d}.log"), duration_s=90,
            )
            clean_by_lang[lang].append(clean)
            stats.append(stat)
    blend = r.job(
        "blend", {}, stats,
        [
            ("output", r.path("data/blend/blend.json"), run_id, "file"),
            ("output", r.path("data/blend/blend.md"), run_id, "file"),
            ("output", r.path("data/blend/data_args.txt"), run_id, "file"),
        ],
        log=r.path("logs/blend.log"), duration_s=5,
    )[0]
    all_clean = [a for lang in LANGS for a in clean_by_lang[lang]]
    (tokenizer,) = r.job(
        "train_tokenizer", {}, all_clean + [blend], [("output", r.path("tokenizer"), run_id, "directory")],
        log=r.path("logs/train_tokenizer.log"), threads=64, duration_s=3600,
    )
    r.job(
        "tokenizer_parity", {}, [tokenizer],
        [
            ("output", r.path("reports/tokenizer_parity.json"), run_id, "file"),
            ("output", r.path("reports/tokenizer_parity.md"), run_id, "file"),
        ],
        log=r.path("logs/tokenizer_parity.log"), duration_s=300,
    )
    bins = []
    for lang in LANGS:
        prefix = r.path(f"data/tokenized/{lang}_text_document")
        bin_, _idx = r.job(
            "tokenize_language", {"lang": lang}, clean_by_lang[lang] + [tokenizer],
            [("output", prefix + ".bin", run_id, "file"), ("output", prefix + ".idx", run_id, "file")],
            log=r.path(f"logs/tokenize/{lang}.log"), duration_s=600,
        )
        bins.append(bin_)
    pretrain_outputs = [
        ("output", r.path("train/checkpoints"), run_id, "directory"),
        ("output", r.path("train/train_log.jsonl"), run_id, "file"),
        ("output", r.path("train/loss_curve.png"), run_id, "file"),
    ]
    pretrain_kwargs = dict(log=r.path("logs/pretrain.log"), threads=128, duration_s=86_400)
    if fails_in_pretrain:
        r.job("pretrain", {}, bins + [blend, tokenizer], pretrain_outputs, fail_attempts=3, final_failure=True,
              **pretrain_kwargs)
        status, error = "failed", "Exiting because a job execution failed. Look above for error message"
    else:
        checkpoints = r.job("pretrain", {}, bins + [blend, tokenizer], pretrain_outputs, **pretrain_kwargs)[0]
        (hf,) = r.job(
            "export_hf", {}, [checkpoints, tokenizer], [("output", r.path("model/hf"), run_id, "directory")],
            log=r.path("logs/export_hf.log"), duration_s=600,
        )
        ggufs = []
        for qtype in GGUF_TYPES:
            # the last run's Q4_0 conversion is OOM-killed once: the lineage shows attempts 1/2
            ggufs += r.job(
                "gguf", {"qtype": qtype}, [hf], [("output", r.path(f"quantized/model-{qtype}.gguf"), run_id, "file")],
                log=r.path(f"logs/gguf/{qtype}.log"), duration_s=900,
                fail_attempts=1 if (qtype == "Q4_0" and index == n_runs - 1) else None,
            )
        (int8,) = r.job(
            "int8", {}, [hf], [("output", r.path("quantized/model-int8.pt"), run_id, "file")],
            log=r.path("logs/int8.log"), duration_s=600,
        )
        r.job(
            "quantization_quality", {}, [hf, *ggufs, int8],
            [
                ("output", r.path("reports/quantization.json"), run_id, "file"),
                ("output", r.path("reports/quantization.md"), run_id, "file"),
            ],
            log=r.path("logs/quantization_quality.log"), duration_s=1800,
        )
        bpb = []
        for lang in LANGS:
            bpb += r.job(
                "bits_per_byte", {"lang": lang}, [hf], [("output", r.path(f"eval/bpb/{lang}.json"), run_id, "file")],
                log=r.path(f"logs/bits_per_byte/{lang}.log"), duration_s=120,
            )
        (mc,) = r.job(
            "multiple_choice", {}, [hf], [("output", r.path("eval/belebele.json"), run_id, "file")],
            log=r.path("logs/multiple_choice.log"), duration_s=1200,
        )
        r.job(
            "evaluation_report", {}, bpb + [mc],
            [("output", r.path("reports/evaluation.json"), run_id, "file"),
             ("output", r.path("reports/evaluation.md"), run_id, "file")],
            log=r.path("logs/evaluation_report.log"), duration_s=5,
        )
        status, error = "success", None

    config = {"run": {"name": "eu35-1b", "seed": 1234}, "languages": LANGS, "data": {"variant": config_variant}}
    config_json = json.dumps(config)
    b.rows[Run].append(
        {
            "id": run_id,
            "status": status,
            "started_at": started,
            "ended_at": r.clock + dt.timedelta(hours=1),
            "workdir": workdir,
            "snakefile": f"{workdir}/Snakefile",
            "command": "snakemake --profile profiles/lumi --configfile workflow/configs/eu35-1b.yaml --forceall",
            "host": f"uan0{group + 1}",
            "user": "mvirtanen",
            "snakemake_version": "9.27.1",
            "configfiles": [f"{workdir}/workflow/configs/eu35-1b.yaml"],
            "snakemake_config_md5": _sha(config_json)[:32],
            "config_path": f"{workdir}/results/eu35-1b/config.resolved.json",
            "config_hash": _sha(config_json),
            "config_json": config_json,
            "git_commit": _sha("commit", index // 2)[:40],
            "git_dirty": index % 5 == 4,
            "site": "lumi",
            "profile": "profiles/lumi",
            "error": error,
        }
    )
    for name, version in {"torch": "2.13.0", "megatron-core": "0.16.1", "snakemake": "9.27.1", "gguf": "0.19.0"}.items():
        b.rows[RunPackage].append({"run_id": run_id, "name": name, "version": version})
    return run_id, b.next_job_id - first_job


def build_database(path: Path, jobs: int, runs: int, seed: int) -> None:
    per_run = jobs / runs / (1 + RETRY_RATE * 1.1)
    shards = max(1, round((per_run - FIXED_JOBS) / (2 * len(LANGS))))
    b = Builder(seed)
    engine = open_db(path)
    try:
        start = dt.datetime(2026, 9, 1, 8, 0, 0)
        with Session(engine) as session, session.begin():
            for index in range(runs):
                build_run(b, index, runs, shards, start + dt.timedelta(days=2 * index))
                b.flush(session)
    finally:
        engine.dispose()
    print(
        f"built {path}: {b.counts[Run]} runs, {b.counts[Job]} job rows ({shards} shards x {len(LANGS)} languages per run), "
        f"{b.counts[Artifact]} artifacts, {b.counts[Used]} used, {b.counts[Generated]} generated edges",
        file=sys.stderr,
    )


def _median_ms(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _euroflow_command() -> list[str]:
    script = Path(sys.executable).parent / "euroflow"
    if script.exists():
        return [str(script)]
    found = shutil.which("euroflow")
    return [found] if found else [sys.executable, "-m", "euroflow.cli"]


def _cli_ms(args: list[str], repeat: int, expect_rc: int = 0) -> float:
    def call() -> None:
        proc = subprocess.run(_euroflow_command() + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != expect_rc:
            raise SystemExit(f"euroflow {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")

    return _median_ms(call, repeat)


def _statements(connection, fn: Callable[[], object]) -> int:
    count = 0

    def trace(_statement: str) -> None:
        nonlocal count
        count += 1

    connection.set_trace_callback(trace)
    try:
        fn()
    finally:
        connection.set_trace_callback(None)
    return count


def _lineage_size(node: dict) -> int:
    return 1 + sum(_lineage_size(child) for child in node.get("inputs", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="job rows to generate (default 100000)")
    parser.add_argument("--runs", type=int, default=20, help="runs to spread them over (default 20)")
    parser.add_argument("--db", type=Path, help="database to reuse or create (default: in the temp directory)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each in-process query (median)")
    parser.add_argument("--cli-repeat", type=int, default=3, help="repetitions of each CLI call (median)")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args(argv)
    db = (args.db or Path(tempfile.gettempdir()) / f"euroflow-prov-bench-{args.jobs}x{args.runs}.sqlite").absolute()

    if db.exists():
        print(f"reusing {db}", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        build_database(db, args.jobs, args.runs, args.seed)
        print(f"build took {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    engine = open_db(db, create=False)
    try:
        with Session(engine) as session:
            n_jobs = session.scalar(select(func.count()).select_from(Job))
            n_artifacts = session.scalar(select(func.count()).select_from(Artifact))
            last_run = session.scalars(select(Run.id).order_by(Run.started_at.desc()).limit(1)).one()
            target = session.scalars(
                select(Artifact.path)
                .join(Generated, Generated.artifact_id == Artifact.id)
                .join(Job, Job.id == Generated.job_id)
                .where(Job.run_id == last_run, Job.rule == "gguf", Job.status == "success", Generated.role == "output")
                .where(Artifact.path.endswith("-Q4_0.gguf"))
            ).one()
        con = lookup.connect(db)
        tree = lookup.lineage(con, target)
        lineage_nodes = _lineage_size(tree)
        lineage_statements = _statements(con, lambda: lookup.lineage(con, target))
        runs_statements = _statements(con, lambda: lookup.list_runs(con))

        results: list[tuple[str, float, float | None]] = []
        results.append(("open_db (schema check)", _median_ms(lambda: open_db(db, create=False).dispose(), args.repeat), None))
        runs_ms = _median_ms(lambda: lookup.list_runs(con), args.repeat)
        results.append(("lookup.list_runs", runs_ms, GOAL_MS))
        lineage_ms = _median_ms(lambda: lookup.lineage(con, target), args.repeat)
        results.append(("lookup.lineage (final GGUF)", lineage_ms, GOAL_MS))
        con.close()
        detail_ms = _median_ms(lambda: queries.run_detail(engine, last_run), args.repeat)
        results.append(("queries.run_detail (last run)", detail_ms, None))
        jobs_ms = _median_ms(lambda: queries.list_jobs(engine, last_run), args.repeat)
        results.append(("queries.list_jobs (last run)", jobs_ms, None))
    finally:
        engine.dispose()

    floor_ms = _cli_ms(["prov", "runs", "--db", str(db) + ".absent"], args.cli_repeat, expect_rc=1)
    results.append(("CLI floor (start-up, no query)", floor_ms, None))
    runs_cli_ms = _cli_ms(["prov", "runs", "--json", "--db", str(db)], args.cli_repeat)
    results.append(("euroflow prov runs --json", runs_cli_ms, GOAL_MS))
    lineage_cli_ms = _cli_ms(["prov", "lineage", target, "--json", "--db", str(db)], args.cli_repeat)
    results.append(("euroflow prov lineage --json", lineage_cli_ms, GOAL_MS))
    tree_cli_ms = _cli_ms(["prov", "lineage", target, "--db", str(db)], 1)
    results.append(("euroflow prov lineage (rich tree)", tree_cli_ms, None))

    db_mb = db.stat().st_size / 2**20
    print(f"database {db}: {n_jobs} job rows, {n_artifacts} artifacts, {db_mb:.1f} MiB")
    print(f"lineage target {target}: {lineage_nodes} tree nodes, {lineage_statements} SQL statements; "
          f"list_runs: {runs_statements} statement(s)")
    width = max(len(name) for name, _, _ in results)
    print(f"{'operation':<{width}}  {'median ms':>10}  {'goal ms':>8}  pass")
    for name, ms, goal in results:
        verdict = "-" if goal is None else ("yes" if ms < goal else "NO")
        print(f"{name:<{width}}  {ms:>10.1f}  {'-' if goal is None else f'{goal:.0f}':>8}  {verdict}")
    figures = {
        "jobs": n_jobs,
        "artifacts": n_artifacts,
        "runs_ms": round(runs_ms, 1),
        "lineage_ms": round(lineage_ms, 1),
        "run_detail_ms": round(detail_ms, 1),
        "list_jobs_ms": round(jobs_ms, 1),
        "cli_floor_ms": round(floor_ms, 1),
        "runs_cli_ms": round(runs_cli_ms, 1),
        "lineage_cli_ms": round(lineage_cli_ms, 1),
        "lineage_tree_cli_ms": round(tree_cli_ms, 1),
        "lineage_nodes": lineage_nodes,
        "lineage_statements": lineage_statements,
        "db_mb": round(db_mb, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
