"""Walltime-proof pretraining on the real local Slurm cluster: a training job with a 1-minute limit
is signalled (USR2), checkpoints, is requeued by submitit and resumes; it ends at exactly the
configured step with the same losses as an uninterrupted run. A crash is not requeued."""

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from euroflow import sites
from euroflow.errors import EuroflowError
from euroflow.provenance import sidecar
from euroflow.provenance.db import open_db
from euroflow.provenance.ingest import ingest
from euroflow.sites import submission
from euroflow.train.launcher import launch
from euroflow.train.loop import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import train_corpus as corpus  # noqa: E402

pytestmark = pytest.mark.slurm
# An allocation has a 1-minute limit and gets USR2 30 s before it (Slurm may send it up to a minute
# early): after ~15-20 s of start-up it trains for at most ~25 s, a few hundred steps on two idle
# cores, far fewer while the reference run shares them. 1,200 steps therefore span at least two
# allocations and, under load, many: requeues are bounded by progress, not by their number. The
# regular checkpoint at step 1,000 falls into some allocation, as a save at the signal once killed
# megatron's write-results server.
STEPS = 1200
SLURM_CI = {"nodes": 1, "runtime": 1, "slurm_partition": "debug"}


class _ReleaseRequeued(threading.Thread):
    """A requeued job waits ~120 s (BeginTime) before Slurm starts it again: start it now."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.released = []

    def run(self):
        while not self.stop.wait(1.0):
            proc = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True)
            for line in proc.stdout.splitlines():
                jobid, state, reason = (line.split(None, 2) + ["", ""])[:3]
                if state == "PENDING" and "BeginTime" in reason:
                    subprocess.run(["scontrol", "update", f"jobid={jobid}", "StartTime=now"], capture_output=True)
                    self.released.append(jobid)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_root):
    return corpus.build(data_root, tmp_path_factory.mktemp("slurm-train-inputs"))


def _uninterrupted(out, inputs, results):
    """The same 2-rank data-parallel run, spawned on this machine without Slurm."""
    config = corpus.tiny_config(nproc=2, train_steps=STEPS, checkpoint_interval=1000)
    results["summary"] = pretrain(config, inputs["blend"], inputs["tokenizer"], out)
    results["log"] = corpus.read_log(out)


def test_one_minute_allocations_requeue_and_resume_exactly(tmp_path, inputs, slurm_cluster, monkeypatch, capsys):
    monkeypatch.setenv("SBATCH_ACCOUNT", "euroflow")
    config = corpus.tiny_config(nproc=2, train_steps=STEPS, checkpoint_interval=1000)
    allocations = tmp_path / "slurm_allocations.jsonl"
    releaser = _ReleaseRequeued()
    releaser.start()
    reference = {}
    # the reference run shares the two cores meanwhile: slower allocations only mean more requeues
    uninterrupted = threading.Thread(target=_uninterrupted, args=(tmp_path / "uninterrupted", inputs, reference))
    uninterrupted.start()
    started = time.time()
    try:
        summary = launch(config, str(inputs["blend"]), str(inputs["tokenizer"]), str(tmp_path / "slurm"), site_name="slurm-ci",
                         resources=SLURM_CI, allocations=str(allocations), signal_delay_s=30, poll_s=2,
                         max_stalled=6)  # 1-minute allocations on a loaded machine: start-up alone can fill one
    finally:
        releaser.stop.set()
        uninterrupted.join()
    runs = sorted((json.loads(line) for line in allocations.read_text().splitlines()), key=lambda r: r["restart_count"])
    print(f"\n{len(runs)} allocations in {time.time() - started:.0f} s:",
          [(r["restart_count"], r.get("resumed_from"), r.get("last_step"), r["outcome"]) for r in runs])
    assert len(runs) >= 2
    assert {r["slurm_jobid"] for r in runs} == {summary["slurm_job_id"]}
    assert [r["restart_count"] for r in runs] == list(range(len(runs)))
    trained = [r for r in runs if r["outcome"] != "requeued before training started"]
    assert [r["outcome"] for r in trained] == ["preempted"] * (len(trained) - 1) + ["finished"]
    assert len(trained) >= 2  # at least one allocation resumed what another one trained
    for before, after in zip(trained, trained[1:]):
        assert after["resumed_from"] == before["last_step"]  # each allocation picks up at the checkpoint of the last
    assert summary["finished"] and summary["last_step"] == STEPS
    reference_summary, reference_log = reference["summary"], reference["log"]
    log = corpus.read_log(tmp_path / "slurm")
    assert [e["step"] for e in log] == list(range(1, STEPS + 1))
    assert [e["loss"] for e in log] == [e["loss"] for e in reference_log]
    assert summary["final_loss"] == reference_summary["final_loss"]
    assert _final_states(summary["slurm_job_id"]) == ["REQUEUED"] * (len(runs) - 1) + ["COMPLETED"]
    relayed = [line for line in capsys.readouterr().err.splitlines() if " | loss " in line]
    assert relayed and relayed[-1].split(" step ")[1].startswith(f"{STEPS}/{STEPS} |"), relayed[-3:]  # the job's output followed

    # provenance: the pretrain job's sidecar carries the allocations; ingest records one row per
    # allocation and completes each from sacct --duplicates
    record = sidecar.JobRecord(tmp_path / "slurm" / "checkpoints.prov.json", rule="pretrain", wildcards={}, jobid=1,
                               inputs=[], outputs=[str(tmp_path / "slurm" / "checkpoints")], logs=[], run_id="requeue-test",
                               allocations=str(allocations))
    record.start()
    record.end(None)
    db = tmp_path / "prov.sqlite"
    ingest(open_db(db), [record.path])
    rows = sqlite3.connect(db).execute(
        "select slurm_jobid, restart_count, state, outcome from slurm_jobs order by restart_count").fetchall()
    assert rows == [(summary["slurm_job_id"], i, "REQUEUED" if i < len(runs) - 1 else "COMPLETED", r["outcome"])
                    for i, r in enumerate(runs)]


def test_a_crash_is_not_requeued_and_the_reason_is_reported(tmp_path, inputs, slurm_cluster, monkeypatch):
    monkeypatch.setenv("SBATCH_ACCOUNT", "euroflow")
    config = corpus.tiny_config(nproc=2, train_steps=STEPS)
    with pytest.raises(EuroflowError) as failure:
        launch(config, str(tmp_path / "no-such-blend.json"), str(inputs["tokenizer"]), str(tmp_path / "out"),
               site_name="slurm-ci", resources=SLURM_CI, signal_delay_s=30, poll_s=2)
    message = str(failure.value)
    assert message.startswith("training job ") and "is not requeued" in message and "no-such-blend.json" in message
    jobid = message.split()[2]
    assert _final_states(jobid) == ["FAILED"]


def _final_states(jobid):
    """Every run of ``jobid`` in accounting, once the last one has ended (sacct lags the job by a moment)."""
    for _ in range(30):
        states = subprocess.run(["sacct", "--duplicates", "-n", "-X", "-P", "-o", "State", "-j", jobid],
                                capture_output=True, text=True).stdout.split()
        if states and states[-1] not in ("PENDING", "RUNNING", "REQUEUED"):
            return states
        time.sleep(1)
    return states


def test_a_restarted_launcher_attaches_to_the_job_still_in_slurm(tmp_path, inputs, slurm_cluster):
    """The Snakemake head dies while its training job runs: the rerun waits for that job, not a second one."""
    config = corpus.tiny_config(nproc=2, train_steps=600)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [str(Path(sys.executable).with_name("euroflow")), "train", "pretrain", "--config", str(config_path),
               "--blend", str(inputs["blend"]), "--tokenizer", str(inputs["tokenizer"]), "--out", str(tmp_path / "out"),
               "--site", "slurm-ci", "--nodes", "1", "--minutes", "10", "--partition", "debug"]
    env = {**slurm_cluster.env, "SBATCH_ACCOUNT": "euroflow"}
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    line = first.stderr.readline()
    assert line.startswith("euroflow: submitted training job "), line
    jobid = line.split()[4]
    first.kill()
    first.wait()
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"euroflow: attached to training job {jobid}, still in Slurm" in second.stderr
    assert " step 600/600 | loss " in second.stderr  # the job's progress lines, relayed from its output file
    assert json.loads(second.stdout)["slurm_job_id"] == jobid and json.loads(second.stdout)["last_step"] == 600
    assert _final_states(jobid) == ["COMPLETED"]
    # what `euroflow site check` prints is what was submitted
    site = sites.load("slurm-ci")
    params = submission.training_parameters(site, {"nodes": 1, "runtime": 10, "slurm_partition": "debug"},
                                            account_name="euroflow", job_name="euroflow-pretrain-train-test")
    launcher_python = Path(command[0]).read_text().splitlines()[0].removeprefix("#!")  # the euroflow script's interpreter
    rendered = submission.training_script(params, tmp_path / "out" / "submitit", submission.python_command(site, "euroflow") or launcher_python)
    assert (tmp_path / "out" / "submitit" / f"{jobid}_submission.sh").read_text() == rendered


def _running_on(jobid, limit_s=120):
    """The node a job runs on, once it runs."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        state, _, node = subprocess.run(["squeue", "-h", "-j", jobid, "-o", "%T %N"], capture_output=True,
                                        text=True).stdout.strip().partition(" ")
        if state == "RUNNING" and node:
            return node
        time.sleep(0.5)
    raise AssertionError(f"job {jobid} not running after {limit_s} s")


@pytest.mark.parametrize("slurm_requeues", [True, False], ids=["slurm-requeues", "site-without-requeue"])
def test_a_node_that_fails_mid_run_is_left_out_and_the_run_resumes_on_another(tmp_path, inputs, slurm_cluster, monkeypatch, capsys,
                                                                               slurm_requeues):
    """A real node failure: the node a training job runs on is drained (as a health check does) and set
    down, which kills the job (NODE_FAIL). Where Slurm requeues it (JobRequeue=1, the default), the
    launcher records the failure and keeps the node out of the requeued job (ExcNodeList); on a site
    that does not requeue (sbatch --no-requeue here), it submits the job again with --exclude. Either
    way the run resumes from the last checkpoint on the other node and ends at the configured step."""
    from euroflow.train.checkpoint import latest_iteration

    monkeypatch.setenv("SBATCH_ACCOUNT", "euroflow")
    if not slurm_requeues:
        monkeypatch.setenv("SBATCH_NO_REQUEUE", "1")  # sbatch's own variable for --no-requeue
    steps = 600
    config = corpus.tiny_config(nproc=2, train_steps=steps, checkpoint_interval=100)
    allocations, out = tmp_path / "slurm_allocations.jsonl", tmp_path / "slurm"
    current = out / "submitit" / "current_job"
    result = {}

    def run():
        try:
            result["summary"] = launch(config, str(inputs["blend"]), str(inputs["tokenizer"]), str(out), site_name="slurm-ci",
                                       resources={"nodes": 1, "runtime": 10, "slurm_partition": "failover"},
                                       allocations=str(allocations), poll_s=1)
        except Exception as exc:  # noqa: BLE001  (reported by the assertions below)
            result["error"] = exc

    launcher = threading.Thread(target=run, daemon=True)
    launcher.start()
    failed = None
    try:
        deadline = time.time() + 300
        while not current.exists() and time.time() < deadline:
            time.sleep(0.5)
        jobid = current.read_text().strip()
        failed = _running_on(jobid)
        while (latest_iteration(out / "checkpoints") or 0) < 100 and time.time() < deadline:
            assert launcher.is_alive(), result
            time.sleep(0.5)
        assert latest_iteration(out / "checkpoints"), "no checkpoint within 300 s"
        for state in ("drain", "down"):  # drained first: a node set down while slurmd answers is back at once
            update = subprocess.run(["scontrol", "update", f"nodename={failed}", f"state={state}", "reason=euroflow-test-node-failure"],
                                    capture_output=True, text=True)
            assert update.returncode == 0, update.stderr
        if slurm_requeues:
            while time.time() < deadline:  # the launcher keeps the node out of the requeued job; then it may start
                shown = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
                if f"ExcNodeList={failed}" in shown:
                    break
                assert launcher.is_alive(), result
                time.sleep(0.5)
            else:
                raise AssertionError(f"job {jobid} requeued without ExcNodeList={failed}: {shown}")
            subprocess.run(["scontrol", "update", f"jobid={jobid}", "StartTime=now"], capture_output=True)  # not ~120 s after the requeue
        launcher.join(timeout=400)
        assert not launcher.is_alive(), "the launcher did not end within 400 s of the node failure"
    finally:
        if failed:
            subprocess.run(["scontrol", "update", f"nodename={failed}", "state=resume"], capture_output=True)
    assert "error" not in result, result["error"]
    summary = result["summary"]
    other = ({"localhost", "spare"} - {failed}).pop()
    assert summary["finished"] and summary["last_step"] == steps
    runs = [json.loads(line) for line in allocations.read_text().splitlines()]
    assert [r["outcome"] for r in runs] == ["node failure: NODE_FAIL", "finished"], runs
    assert (runs[0]["slurm_jobid"], runs[0]["restart_count"], runs[0]["nodelist"], runs[0]["excluded"]) == (jobid, 0, failed, [failed])
    assert runs[1]["nodelist"] == other and runs[1]["resumed_from"] >= 100
    assert [e["step"] for e in corpus.read_log(out)] == list(range(1, steps + 1))
    err = capsys.readouterr().err
    if slurm_requeues:
        assert summary["slurm_job_id"] == jobid and (runs[1]["slurm_jobid"], runs[1]["restart_count"]) == (jobid, 1)
        assert _final_states(jobid) == ["NODE_FAIL", "COMPLETED"]
        assert f"euroflow: training job {jobid} ended NODE_FAIL on {failed}; Slurm requeued it, it runs again without {failed}" in err
    else:
        second = summary["slurm_job_id"]
        assert second != jobid and (runs[1]["slurm_jobid"], runs[1]["restart_count"]) == (second, 0)
        assert _final_states(jobid) == ["NODE_FAIL"] and _final_states(second) == ["COMPLETED"]
        assert f"#SBATCH --exclude={failed}\n" in (out / "submitit" / f"{second}_submission.sh").read_text()
        assert f"euroflow: training job {jobid} ended NODE_FAIL (Slurm state NODE_FAIL) on {failed}; submitting it again without {failed}" in err
