"""Real Snakemake runs of a tiny workflow, recorded by the euroflow logger plugin."""

from __future__ import annotations

import hashlib
import os
import json
import sqlite3
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from euroflow.config import config_hash
from euroflow.provenance import cli
from euroflow.provenance.db import open_db
from euroflow.provenance.environment import KEY_PACKAGES
from prov_workflow import CONFIG, DB_RELATIVE, git_cmd, make_workflow, snakemake


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs: the whole workflow, a failing target (tree made dirty first), a forced re-run."""
    workdir = make_workflow(tmp_path_factory.mktemp("prov") / "wf")
    first = snakemake(workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    snapshot = {p: sha256_of(workdir / p) for p in ("out/de/greeting.txt", "out/fr/greeting.txt")}
    with open(workdir / "Snakefile", "a") as fh:
        fh.write("# an uncommitted edit\n")
    failed = snakemake(workdir, "out/broken.txt")
    assert failed.returncode != 0
    rerun = snakemake(workdir, "--forceall")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    db = workdir / DB_RELATIVE
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    run_ids = [r["id"] for r in con.execute("select id from runs order by started_at")]
    assert len(run_ids) == 3
    yield {"workdir": workdir, "db": db, "con": con, "ids": run_ids, "snapshot": snapshot}
    con.close()


def jobs_of(con, run_id):
    return con.execute("select * from jobs where run_id = ? order by snakemake_jobid", (run_id,)).fetchall()


def generated_of(con, job_id):
    return con.execute(
        "select g.role, a.* from generated g join artifacts a on a.id = g.artifact_id where g.job_id = ?", (job_id,)
    ).fetchall()


def test_one_row_per_job_with_rule_and_wildcards(runs):
    rows = jobs_of(runs["con"], runs["ids"][0])
    assert sorted((r["rule"], r["wildcards"]) for r in rows) == sorted(
        [("all", "{}"), ("bundle", "{}"), ("greet", '{"lang": "de"}'), ("greet", '{"lang": "fr"}')]
    )
    assert {r["status"] for r in rows} == {"success"}
    assert {r["exit_status"] for r in rows} == {0}
    assert all(r["attempt"] == 1 and r["started_at"] <= r["ended_at"] for r in rows)


def test_outputs_hashed_files_and_directory(runs):
    con, workdir = runs["con"], runs["workdir"]
    greet = [r for r in jobs_of(con, runs["ids"][0]) if r["rule"] == "greet"]
    for job in greet:
        lang = json.loads(job["wildcards"])["lang"]
        produced = {row["role"]: row for row in generated_of(con, job["id"])}
        out = workdir / "out" / lang / "greeting.txt"
        assert produced["output"]["path"] == str(out)
        assert produced["output"]["sha256"] == runs["snapshot"][f"out/{lang}/greeting.txt"]
        assert produced["output"]["size"] == out.stat().st_size
        assert produced["log"]["path"] == str(workdir / "logs" / f"greet_{lang}.log")
        assert produced["log"]["sha256"] == hashlib.sha256(b"ok\n").hexdigest()
    bundle = next(r for r in jobs_of(con, runs["ids"][0]) if r["rule"] == "bundle")
    [row] = generated_of(con, bundle["id"])
    assert row["role"] == "output"
    # Merkle-style: sha256 of the sha256sum-format manifest (sorted relative paths)
    listing = subprocess.run(
        "find . -type f ! -path ./.snakemake_timestamp | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum",
        shell=True, cwd=workdir / "out" / "bundle", capture_output=True, text=True, check=True,
    ).stdout
    assert listing.count("\n") == 2
    assert row["kind"] == "directory"
    assert row["sha256"] == hashlib.sha256(listing.encode()).hexdigest()


def test_inputs_are_used_edges(runs):
    con = runs["con"]
    bundle = next(r for r in jobs_of(con, runs["ids"][0]) if r["rule"] == "bundle")
    used = con.execute(
        "select a.path, a.sha256 from used u join artifacts a on a.id = u.artifact_id where u.job_id = ? and u.role = 'input'",
        (bundle["id"],),
    ).fetchall()
    workdir = runs["workdir"]
    assert sorted(tuple(r) for r in used) == sorted(
        (str(workdir / "out" / l / "greeting.txt"), runs["snapshot"][f"out/{l}/greeting.txt"]) for l in ("de", "fr")
    )


def test_run_records_config_git_and_packages(runs):
    con, workdir = runs["con"], runs["workdir"]
    first, failed, _ = (con.execute("select * from runs where id = ?", (i,)).fetchone() for i in runs["ids"])
    assert first["status"] == "success" and first["ended_at"] >= first["started_at"]
    assert first["config_hash"] == config_hash(CONFIG)
    assert json.loads(first["config_json"]) == CONFIG
    assert first["config_path"] == str(workdir / "config.yaml")
    assert first["workdir"] == str(workdir)
    head = git_cmd(workdir, "rev-parse", "HEAD").strip()
    assert (first["git_commit"], first["git_dirty"]) == (head, 0)
    assert (failed["git_commit"], failed["git_dirty"]) == (head, 1)
    # the uncommitted edit is identified by the hash of the diff (the fixture appended one line)
    diff = git_cmd(workdir, "diff", "HEAD", "--binary")
    assert first["git_diff_sha256"] is None
    assert failed["git_diff_sha256"] == hashlib.sha256(diff.encode()).hexdigest()
    packages = dict(con.execute("select name, version from run_packages where run_id = ?", (first["id"],)).fetchall())
    assert set(packages) == set(KEY_PACKAGES)
    assert packages["torch"] == metadata.version("torch")
    assert packages["megatron-core"] == metadata.version("megatron-core")
    assert packages["snakemake"] == metadata.version("snakemake")


def test_failed_job_is_recorded_with_its_failure(runs):
    con = runs["con"]
    run = con.execute("select * from runs where id = ?", (runs["ids"][1],)).fetchone()
    assert run["status"] == "failed"
    [job] = jobs_of(con, run["id"])
    assert (job["rule"], job["status"], job["exit_status"]) == ("broken", "failed", 3)
    assert "exit status 3" in job["error"]
    assert job["ended_at"] >= job["started_at"]
    produced = {row["role"]: row for row in generated_of(con, job["id"])}
    # the log survives the failure and is kept as evidence; the output was removed by Snakemake
    assert set(produced) == {"log"}
    assert produced["log"]["sha256"] == hashlib.sha256(b"about to fail\n").hexdigest()


def test_rerun_is_a_second_run_with_the_same_artifacts(runs):
    con = runs["con"]
    first, _, rerun = runs["ids"]
    assert len(jobs_of(con, rerun)) == 4
    dupes = con.execute("select path, sha256, count(*) from artifacts group by path, sha256 having count(*) > 1").fetchall()
    assert dupes == []

    def outputs(run_id):
        return {
            (r["rule"], r["wildcards"]): {row["id"] for row in generated_of(con, r["id"])}
            for r in jobs_of(con, run_id)
        }

    assert outputs(first) == outputs(rerun)
    assert all(outputs(first).get(("greet", '{"lang": "de"}')))


def test_database_file_mode_and_rollback_journal(runs):
    db = runs["db"]
    mode = stat.S_IMODE(db.stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)
    assert mode & 0o600 == 0o600
    assert runs["con"].execute("pragma journal_mode").fetchone()[0] == "delete"
    assert not Path(str(db) + "-wal").exists()


def test_cli_runs_show_jobs(runs, capsys):
    db = str(runs["db"])
    assert cli.main(["runs", "--db", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == runs["ids"]
    assert [r["status"] for r in listed] == ["success", "failed", "success"]
    assert [r["jobs"] for r in listed] == [4, 1, 4]

    assert cli.main(["show", runs["ids"][0][:8], "--db", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == runs["ids"][0]
    assert shown["packages"]["torch"] == metadata.version("torch")
    bundle = next(j for j in shown["jobs"] if j["rule"] == "bundle")
    assert {e["kind"] for e in bundle["generated"]} == {"directory"}
    assert len(shown["artifacts"]) == 5  # 2 greetings, 2 logs, 1 directory

    assert cli.main(["jobs", runs["ids"][1], "--db", db]) == 0
    table = capsys.readouterr().out
    assert "broken" in table and "failed" in table

    assert cli.main(["show", "no-such-run", "--db", db]) == 1
    err = capsys.readouterr().err
    assert "no-such-run" in err and err.count("\n") == 1


def test_retried_attempts_and_missing_outputs(tmp_path):
    workdir = make_workflow(tmp_path / "wf", git=False)
    proc = snakemake(workdir, "out/flaky.txt", "out/forgotten.txt", "--retries", "1", "--latency-wait", "1", "--keep-going")
    assert proc.returncode != 0
    con = sqlite3.connect(workdir / DB_RELATIVE)
    [(run_id, status)] = con.execute("select id, status from runs").fetchall()
    assert status == "failed"
    rows = con.execute(
        "select rule, attempt, status, exit_status, error from jobs where run_id = ? order by rule, attempt", (run_id,)
    ).fetchall()
    con.close()
    assert [r[:4] for r in rows] == [
        ("flaky", 1, "failed", 7),
        ("flaky", 2, "success", 0),
        ("forgetful", 1, "failed", None),
        ("forgetful", 2, "failed", None),
    ]
    assert all("MissingOutputException" in r[4] for r in rows[2:])


def test_without_the_logger_a_real_run_refuses_to_start(tmp_path):
    workdir = make_workflow(tmp_path / "wf", git=False)
    proc = snakemake(workdir, logger=False)
    assert proc.returncode != 0
    assert "--logger euroflow" in proc.stderr
    assert not (workdir / "out").exists()


def test_a_newer_database_stops_the_workflow_before_any_job(tmp_path):
    workdir = make_workflow(tmp_path / "wf", git=False)
    db = workdir / DB_RELATIVE
    open_db(db).dispose()
    con = sqlite3.connect(db)
    con.execute("update alembic_version set version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    proc = snakemake(workdir)
    assert proc.returncode != 0
    assert "9999_from_the_future" in proc.stderr and "newer" in proc.stderr
    assert not (workdir / "out").exists()


def test_dry_run_records_nothing(tmp_path):
    workdir = make_workflow(tmp_path / "wf", git=False)
    proc = snakemake(workdir, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (workdir / DB_RELATIVE).exists()


HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def _hold_lock(db, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _recorded(db) -> tuple[list[str], list[tuple[str, str]]]:
    con = sqlite3.connect(db)
    try:
        runs = [row[0] for row in con.execute("select status from runs")]
        jobs = sorted(con.execute("select rule, status from jobs"))
    finally:
        con.close()
    return runs, jobs


def test_a_lock_held_longer_than_a_job_loses_no_event(tmp_path):
    workdir = make_workflow(tmp_path / "wf")
    db = workdir / DB_RELATIVE
    open_db(db).dispose()
    holder = _hold_lock(db, 12)
    proc = snakemake(workdir)
    holder.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not recorded" not in proc.stderr
    runs, jobs = _recorded(db)
    assert runs == ["success"] and jobs == [("all", "success"), ("bundle", "success"), ("greet", "success"), ("greet", "success")]


def test_a_lock_held_past_the_end_of_the_run_is_replayed_from_the_sidecars(tmp_path):
    workdir = make_workflow(tmp_path / "wf")
    db = workdir / DB_RELATIVE
    open_db(db).dispose()
    holder = _hold_lock(db, 600)
    env = {**os.environ, "EUROFLOW_PROVENANCE_BUSY_TIMEOUT_S": "2"}
    try:
        exe = Path(sys.executable).with_name("snakemake")
        proc = subprocess.run([str(exe), "--cores", "1", "--logger", "euroflow"], cwd=workdir, capture_output=True, text=True,
                              timeout=300, env=env)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stayed locked by another process to the end of the run" in proc.stderr
    assert (workdir / (DB_RELATIVE + ".unrecorded")).is_file()
    open_db(db).dispose()  # the next writer replays the sidecars
    assert not (workdir / (DB_RELATIVE + ".unrecorded")).exists()
    runs, jobs = _recorded(db)
    assert runs == ["success"] and [rule for rule, status in jobs if status == "success"] == ["bundle", "greet", "greet"]


def test_a_reader_says_that_it_waits_for_a_lock(tmp_path):
    workdir = make_workflow(tmp_path / "wf")
    assert snakemake(workdir).returncode == 0
    db = workdir / DB_RELATIVE
    holder = _hold_lock(db, 4)
    proc = subprocess.run([sys.executable, "-m", "euroflow.cli", "prov", "runs", "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=120)
    holder.wait()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"euroflow: waiting for the provenance database {db}: another process holds its lock"
    assert len(json.loads(proc.stdout)) == 1
