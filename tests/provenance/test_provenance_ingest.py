"""Job sidecars and `euroflow prov ingest`: real Snakemake runs, real SQLite files, real processes."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from euroflow.errors import EuroflowError
from euroflow.provenance import cli, sidecar, slurm_accounting
from euroflow.provenance.db import open_db
from euroflow.provenance.ingest import ingest
from euroflow.provenance.lookup import lineage
from prov_workflow import DB_RELATIVE, make_workflow, snakemake

EUROFLOW = str(Path(sys.executable).with_name("euroflow"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    workdir = make_workflow(tmp_path_factory.mktemp("ingest") / "wf")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


GENERATED = (
    "select j.rule, j.wildcards, j.attempt, j.status, g.role, a.path, a.sha256 from jobs j"
    " join generated g on g.job_id = j.id join artifacts a on a.id = g.artifact_id order by 1, 2, 5, 6"
)


def test_every_job_writes_a_sidecar_and_the_head_reads_it(recorded):
    data = sidecar.read(recorded / "out/de/greeting.txt.prov.json")
    [attempt] = data["attempts"]
    assert attempt["rule"] == "greet" and attempt["wildcards"] == {"lang": "de"} and attempt["status"] == "success"
    assert attempt["outputs"][0]["path"] == str(recorded / "out/de/greeting.txt")
    assert attempt["slurm"] is None  # not under Slurm
    db = recorded / DB_RELATIVE
    [(run_id,)] = rows(db, "select id from runs")
    assert attempt["run_id"] == run_id
    assert (recorded / "out/bundle.prov.json").exists()
    hosts = rows(db, "select rule, host, sidecar from jobs where rule != 'all' order by rule")
    assert [(r, h is not None, s.endswith(".prov.json")) for r, h, s in hosts] == [
        ("bundle", True, True), ("greet", True, True), ("greet", True, True)
    ]


def test_ingest_rebuilds_what_the_head_recorded_and_is_idempotent(recorded, tmp_path):
    head_db = recorded / DB_RELATIVE
    fresh = tmp_path / "from-sidecars.sqlite"
    engine = open_db(fresh)
    try:
        first = ingest(engine, [recorded / "out"])
        again = ingest(engine, [recorded / "out"])
        tree = lineage(engine, recorded / "out/bundle")
    finally:
        engine.dispose()
    assert first == {"sidecars": 3, "attempts": 3, "runs_created": 1, "jobs_created": 3, "jobs_completed": 0, "unchanged": 0, "slurm_accounted": 0, "runs_interrupted": 0}
    assert again["jobs_created"] == 0 and again["unchanged"] == 3 and again["runs_created"] == 0
    head = [r for r in rows(head_db, GENERATED) if r[0] != "all"]
    assert rows(fresh, GENERATED) == head
    assert [child["path"] for child in tree["inputs"]] == [str(recorded / f"out/{l}/greeting.txt") for l in ("de", "fr")]
    assert tree["inputs"][0]["job"]["rule"] == "greet"
    assert rows(fresh, "select status from runs") == [("incomplete",)]


def test_ingest_completes_jobs_the_head_saw_start_but_not_end(recorded, tmp_path):
    db = tmp_path / "head-died.sqlite"
    shutil.copy(recorded / DB_RELATIVE, db)
    con = sqlite3.connect(db)  # what a head killed while jobs ran leaves behind
    job_ids = [r[0] for r in con.execute("select id from jobs where rule = 'greet'")]
    con.execute(f"delete from generated where job_id in ({','.join(map(str, job_ids))})")
    con.execute("update jobs set status = 'running', ended_at = null, exit_status = null, host = null where rule = 'greet'")
    con.commit()
    con.close()
    assert cli.main(["ingest", str(recorded / "out"), "--db", str(db)]) == 0
    assert rows(db, "select count(*), min(status), max(status) from jobs where rule = 'greet'") == [(2, "success", "success")]
    assert rows(db, GENERATED) == rows(recorded / DB_RELATIVE, GENERATED)
    assert rows(db, "select count(*) from runs") == [(1,)]


def test_slurm_fields_from_the_job_environment():
    environ = {
        "SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_JOB_PARTITION": "boost_usr_prod", "SLURM_JOB_ACCOUNT": "EUHPC_X", "SLURM_JOB_NODELIST": "lrdn[0001-0002]",
        "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "4",
    }
    fields = sidecar.slurm_fields(environ)
    assert fields["slurm_jobid"] == "4240_2" and fields["array_index"] == 2 and fields["gpus"] == 8
    assert fields["partition"] == "boost_usr_prod" and fields["account"] == "EUHPC_X" and fields["num_nodes"] == 2
    assert sidecar.slurm_fields({"PATH": "/bin"}) is None


def synthetic_sidecars(root: Path, run_id: str, n: int, writer: int) -> None:
    """n finished job attempts as jobs write them; outputs are described, not read back."""
    for i in range(n):
        out = root / f"w{writer}" / f"shard{i:05d}.bin"
        out.parent.mkdir(parents=True, exist_ok=True)
        attempt = {
            "run_id": run_id, "rule": "tokenize", "wildcards": {"writer": str(writer), "shard": str(i)},
            "snakemake_jobid": writer * n + i, "attempt": 1, "host": f"node{writer}", "workdir": str(root),
            "started_at": 1.8e9 + i, "ended_at": 1.8e9 + i + 1, "status": "success", "error": None,
            "slurm": {"slurm_jobid": f"{1000 + writer}_{i}", "array_index": i, "partition": "small", "gpus": 0},
            "inputs": [], "logs": [],
            "outputs": [{"path": str(out), "kind": "file", "sha256": f"{writer:02d}{i:062d}", "size": i}],
        }
        (out.parent / (out.name + sidecar.SUFFIX)).write_text(json.dumps({"format": sidecar.FORMAT, "attempts": [attempt]}))


def start_ingest(db: Path, *paths: Path) -> subprocess.Popen:
    return subprocess.Popen([EUROFLOW, "prov", "ingest", *map(str, paths), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "shared.sqlite"
    open_db(db).dispose()
    for writer in range(8):
        synthetic_sidecars(tmp_path / "jobs", "run-concurrent", 1000, writer)
    procs = [start_ingest(db, tmp_path / "jobs" / f"w{w}") for w in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert rows(db, "select count(*), count(distinct wildcards) from jobs") == [(8000, 8000)]
    assert rows(db, "select count(*), count(distinct slurm_jobid) from slurm_jobs") == [(8000, 8000)]
    assert rows(db, "select count(*) from generated") == [(8000,)]
    assert rows(db, "select count(*) from runs") == [(1,)]
    assert rows(db, "pragma integrity_check") == [("ok",)]


def test_a_killed_ingest_leaves_a_sound_database_and_repeats_without_duplicates(tmp_path):
    db = tmp_path / "killed.sqlite"
    open_db(db).dispose()
    synthetic_sidecars(tmp_path / "jobs", "run-killed", 3000, 0)
    proc = start_ingest(db, tmp_path / "jobs")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if rows(db, "select count(*) from jobs")[0][0] > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = rows(db, "select count(*) from jobs")[0][0]
    assert rows(db, "pragma integrity_check") == [("ok",)]
    assert partial < 3000, "the ingest finished before it could be killed; make the test bigger"
    again = start_ingest(db, tmp_path / "jobs")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert rows(db, "select count(*), count(distinct wildcards) from jobs") == [(3000, 3000)]
    assert rows(db, "select count(*) from slurm_jobs") == [(3000,)]
    assert rows(db, "pragma integrity_check") == [("ok",)]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"format": "something-else", "attempts": []}), "key 'format'"),
        (json.dumps({"format": sidecar.FORMAT, "attempts": [{"rule": "r"}]}), "attempts[0].wildcards"),
    ],
)
def test_a_bad_sidecar_is_named_and_nothing_is_written(tmp_path, capsys, content, message):
    synthetic_sidecars(tmp_path / "jobs", "run-bad", 3, 0)
    bad = tmp_path / "jobs" / "w0" / "zz-broken.bin.prov.json"
    bad.write_text(content)
    db = tmp_path / "bad.sqlite"
    assert cli.main(["ingest", str(tmp_path / "jobs"), "--db", str(db)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and message in err
    assert rows(db, "select count(*) from jobs") == [(0,)]
    with pytest.raises(EuroflowError, match="no such file"):
        ingest(open_db(db), [tmp_path / "nowhere"])


# sacct --duplicates --parsable2 --noheader --format=JobID,State,ExitCode,ElapsedRaw,MaxRSS,ConsumedEnergyRaw,AllocTRES,NNodes,Partition,Account,QOS,NodeList
SACCT = """\
7301|COMPLETED|0:0|3725|||billing=64,cpu=64,gres/gpu=8,mem=480G,node=1|1|standard-g|project_462000353|normal|nid005123
7301.batch|COMPLETED|0:0|3725|2040K|0|cpu=64,gres/gpu=8,mem=480G,node=1|1||project_462000353||nid005123
7301.0|COMPLETED|0:0|3720|41.5G|0|cpu=56,gres/gpu:mi250=8,mem=480G,node=1|1||project_462000353||nid005123
7302_4|CANCELLED by 1234|0:15|86400||2764800000|billing=32,cpu=32,gres/gpu:a100=4,node=2|2|boost_usr_prod|EUHPC_A01|normal|lrdn[0101-0102]
7302_4.batch|CANCELLED|0:15|86400|12M|||1||EUHPC_A01||lrdn0101
7303|PENDING|0:0|0||0|billing=1,cpu=1,node=1|1|small|project_462000353|normal|None assigned
7304|REQUEUED|0:0|58||0|billing=2,cpu=2,node=1|1|debug|euroflow|normal|localhost
7304.0|CANCELLED|0:15|58|310M|0|cpu=2,node=1|1||euroflow||localhost
7304|COMPLETED|0:0|31||0|billing=2,cpu=2,node=1|1|debug|euroflow|normal|localhost
7304.0|COMPLETED|0:0|31|290M|0|cpu=2,node=1|1||euroflow||localhost
"""


def test_sacct_accounting_is_read_per_allocation():
    records = {jobid: runs[-1] for jobid, runs in slurm_accounting.parse_sacct(SACCT).items()}
    assert sorted(records) == ["7301", "7302_4", "7303", "7304"]
    gpu = records["7301"]
    assert (gpu["state"], gpu["exit_code"], gpu["elapsed_s"], gpu["gpus"]) == ("COMPLETED", "0:0", 3725.0, 8)
    assert gpu["max_rss_bytes"] == int(41.5 * 2**30) and gpu["energy_j"] is None  # no energy counters here
    cancelled = records["7302_4"]
    assert (cancelled["state"], cancelled["gpus"], cancelled["num_nodes"], cancelled["energy_j"]) == ("CANCELLED", 4, 2, 2764800000.0)
    assert cancelled["max_rss_bytes"] == 12 * 2**20 and cancelled["nodelist"] == "lrdn[0101-0102]"
    assert records["7303"]["nodelist"] is None and records["7303"]["gpus"] is None


def test_sacct_keeps_every_run_of_a_requeued_job():
    runs = slurm_accounting.parse_sacct(SACCT)["7304"]
    assert [(r["restart_count"], r["state"], r["elapsed_s"], r["max_rss_bytes"]) for r in runs] == [
        (0, "REQUEUED", 58.0, 310 * 2**20),
        (1, "COMPLETED", 31.0, 290 * 2**20),
    ]
