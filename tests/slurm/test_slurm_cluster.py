"""Smoke tests of the local Slurm cluster (tests/slurm/cluster/up.sh) and of profiles/slurm-ci."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

FIELDS = ("State", "ExitCode", "ElapsedRaw", "Account", "Partition", "AllocTRES")

CHAIN = '''
rule all:
    input: "c.txt"

rule a:
    output: "a.txt"
    shell: "echo a $SLURM_JOB_ID > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    resources: gpu=1
    shell: "cat {input} > {output} && echo b $SLURM_JOB_ID ${{CUDA_VISIBLE_DEVICES-unset}} >> {output}"

rule c:
    input: "b.txt"
    output: "c.txt"
    shell: "cat {input} > {output} && echo c $SLURM_JOB_ID >> {output}"
'''


def test_sbatch_wrap_job_is_accounted(slurm_cluster, tmp_path):
    jobid = slurm_cluster.sbatch("--cpus-per-task=1", "--time=1", f"--output={tmp_path}/%j.out",
                                 "--wrap", "echo hello from $SLURM_JOB_ID; sleep 1.5", cwd=tmp_path)
    record = slurm_cluster.wait(jobid, fields=FIELDS)
    assert record["State"] == "COMPLETED", record
    assert record["ExitCode"] == "0:0", record
    assert int(record["ElapsedRaw"]) > 0, record
    # root's default account and the default partition of the cluster
    assert (record["Account"], record["Partition"]) == (slurm_cluster.account, slurm_cluster.partition)
    assert (tmp_path / f"{jobid}.out").read_text().strip() == f"hello from {jobid}"


def test_gpus_1_sets_cuda_visible_devices(slurm_cluster, tmp_path):
    jobid = slurm_cluster.sbatch("--gpus=1", "--time=1", f"--output={tmp_path}/%j.out",
                                 "--wrap", 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"', cwd=tmp_path)
    record = slurm_cluster.wait(jobid, fields=("State", "AllocTRES"))
    assert record["State"] == "COMPLETED", record
    assert "gres/gpu=1" in record["AllocTRES"], record
    assert (tmp_path / f"{jobid}.out").read_text().strip() == "CUDA_VISIBLE_DEVICES=0"


def test_snakemake_chain_runs_through_the_slurm_plugin(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(CHAIN)
    db = tmp_path / "provenance.sqlite"
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "snakemake"), "--profile", str(slurm_cluster.profile), "--logger-euroflow-db", str(db)]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=slurm_cluster.env, capture_output=True, text=True, timeout=180,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"snakemake on Slurm did not finish in {exc.timeout} s:\n{exc.stderr or ''}"[-4000:])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    lines = [line.split() for line in (tmp_path / "c.txt").read_text().splitlines()]
    assert [line[0] for line in lines] == ["a", "b", "c"], lines
    jobids = [line[1] for line in lines]
    assert len(set(jobids)) == 3 and all(j.isdigit() for j in jobids), lines
    # a GPU rule gets one fake GPU and runs once (the plugin adds --ntasks-per-gpu only with `tasks`)
    assert lines[1][2] == "0", lines
    for jobid in jobids:
        record = slurm_cluster.wait(jobid, timeout=30, fields=FIELDS)
        assert record.get("State") == "COMPLETED", (jobid, record)
        assert (record["Account"], record["Partition"]) == ("euroflow", "debug"), (jobid, record)
        assert f"SLURM jobid {jobid}" in log

    # the profile's logger (euroflow provenance) works in a foreign Snakefile too
    prov = subprocess.run([str(bindir / "euroflow"), "prov", "runs", "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert prov.returncode == 0, prov.stderr
    runs = json.loads(prov.stdout)
    assert [(run["status"], run["jobs"]) for run in runs] == [("success", 4)], runs


def test_a_drained_node_of_a_finished_allocation_is_one_to_exclude(slurm_cluster, tmp_path, monkeypatch):
    """What the launcher does after a node failure, on the real cluster: the allocation's nodes from sacct,
    their state from sinfo; a node the site drained (a health check after an ECC error, say) is excluded."""
    from euroflow.train.launcher import allocation_node_states, nodes_to_exclude

    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    jobid = slurm_cluster.sbatch("--time=1", f"--output={tmp_path}/%j.out", "--wrap", "true", cwd=tmp_path)
    assert slurm_cluster.wait(jobid, fields=("State", "NodeList"))["State"] == "COMPLETED"
    assert allocation_node_states(jobid) == {"localhost": "idle"} and nodes_to_exclude(allocation_node_states(jobid)) == []
    drain = subprocess.run(["scontrol", "update", "nodename=localhost", "state=drain", "reason=euroflow-test"],
                           capture_output=True, text=True, env=slurm_cluster.env)
    assert drain.returncode == 0, drain.stderr
    try:
        assert nodes_to_exclude(allocation_node_states(jobid)) == ["localhost"]
    finally:
        subprocess.run(["scontrol", "update", "nodename=localhost", "state=resume"], capture_output=True, env=slurm_cluster.env)
    assert allocation_node_states(jobid)["localhost"] in ("idle", "mixed", "allocated")
