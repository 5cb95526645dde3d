"""The tiny pipeline end to end through snakemake-executor-plugin-slurm on the local cluster
(profiles/slurm-ci): every job ran as a Slurm job, and provenance holds each job's Slurm id."""

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm
LANGS = ["en", "de"]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, repo_root, slurm_cluster, small_pipeline_config):
    out = tmp_path_factory.mktemp("slurm-e2e")
    cfg = small_pipeline_config(out, "slurm-e2e", LANGS, train_steps=20)
    cfg["tokenizer"]["sample_chars"] = 200_000
    cfg["evaluation"].update(multiple_choice=["belebele"], max_mc_items=4)
    cfg["quantization"].update(gguf=["Q8_0"], torch_int8=False)
    config_path = out / "slurm-e2e.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    started = time.time()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "--profile", "profiles/slurm-ci", "--configfile", str(config_path)],
        cwd=repo_root, capture_output=True, text=True, env={**slurm_cluster.env, "SBATCH_ACCOUNT": "euroflow"},
    )
    print(f"\nslurm-ci pipeline: {time.time() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_every_job_ran_under_slurm_and_is_recorded(slurm_run):
    out, proc = slurm_run
    db = sqlite3.connect(out / "prov.sqlite")
    site, profile = db.execute("select site, profile from runs").fetchone()
    assert site == "slurm-ci" and profile.endswith("profiles/slurm-ci")
    jobs = db.execute("select id, rule from jobs where status = 'success' and rule != 'all'").fetchall()  # all: a target, runs nothing
    assert {rule for _, rule in jobs} >= {"demo_shard", "prepare_shard", "blend", "train_tokenizer", "tokenize_shard",
                                          "pretrain", "export_hf", "bits_per_byte", "gguf", "quantization_quality"}
    slurm = {job_id: rows for job_id, rows in _by_job(db)}
    missing = [rule for job_id, rule in jobs if job_id not in slurm]
    assert missing == []
    ids = [row[0] for rows in slurm.values() for row in rows]
    known = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", "-j", ",".join(ids)], capture_output=True, text=True).stdout.split()
    assert set(ids) <= set(known)
    states = {row[1] for rows in slurm.values() for row in rows}
    assert states == {"COMPLETED"}, states  # filled from sacct when the run closed


def test_pretraining_was_its_own_submitit_job(slurm_run):
    out, _ = slurm_run
    db = sqlite3.connect(out / "prov.sqlite")
    rows = db.execute(
        "select s.slurm_jobid, s.restart_count, s.outcome, s.num_nodes from slurm_jobs s join jobs j on j.id = s.job_id where j.rule = 'pretrain'"
    ).fetchall()
    assert len(rows) == 1 and rows[0][1:] == (0, "finished", 1)


def _by_job(db):
    rows = db.execute("select job_id, slurm_jobid, state from slurm_jobs order by job_id").fetchall()
    grouped = {}
    for job_id, slurm_jobid, state in rows:
        grouped.setdefault(job_id, []).append((slurm_jobid, state))
    return grouped.items()
