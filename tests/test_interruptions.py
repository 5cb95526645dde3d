"""Through Snakemake on the local profile: the training process killed (-9) mid-run, and the Snakemake
head killed (-9) mid-run. Each rerun resumes from the latest checkpoint and ends with the same losses
as an uninterrupted run on the same inputs; provenance shows the interrupted attempt."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture
def run_dir(request, tmp_path, small_pipeline_config):
    """A one-language run config with a training long enough to be killed in the middle (steps: the param)."""
    cfg = small_pipeline_config(tmp_path / "results", "kill", ["en"], train_steps=request.param)
    cfg["training"]["checkpoint_interval"] = 10
    cfg["tokenizer"]["sample_chars"] = 200_000
    cfg["evaluation"].update(multiple_choice=["belebele"], max_mc_items=4)
    cfg["quantization"] = {"gguf": ["Q8_0"], "torch_int8": False}
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(cfg))
    yield tmp_path, config, tmp_path / "results" / "kill"
    for process in psutil.process_iter(["cmdline"]):  # nothing of this test outlives it
        if str(tmp_path) in " ".join(process.info["cmdline"] or []) and process.pid != os.getpid():
            process.kill()


def _snakemake(workdir: Path, config: Path, *args: str, wait: bool = True):
    """Snakemake up to the end of training (export, evaluation and quantization are not what is tested)."""
    target = [] if "--unlock" in args else [str(workdir / "results" / "kill" / "train" / "train_log.jsonl")]
    cmd = [SNAKEMAKE, "--profile", "profiles/local", "--configfile", str(config), "--directory", str(workdir), "--cores", "2",
           *args, *target]
    repo = Path(__file__).resolve().parents[1]
    if wait:
        return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
    log = open(workdir / f"snakemake-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_checkpoint(train: Path, proc: subprocess.Popen, step: int = 10, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    target = train / "checkpoints" / f"iter_{step:07d}"
    while not target.is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.is_dir(), f"training never reached step {step}"


def _trainer(head: subprocess.Popen) -> psutil.Process:
    """The `euroflow train pretrain` process under the Snakemake head (not its spawned ranks)."""
    for child in psutil.Process(head.pid).children(recursive=True):
        words = child.cmdline()
        if "pretrain" in words and any(w.endswith("euroflow") for w in words[:2]):
            return child
    raise AssertionError("no trainer process under the Snakemake head")


def _losses(path: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


def _uninterrupted(run: Path, out: Path) -> list[float]:
    """The same training, on the same prepared inputs, without interruption."""
    proc = subprocess.run(
        [sys.executable, "-m", "euroflow.cli", "train", "pretrain", "--config", str(run / "config.resolved.json"),
         "--blend", str(run / "data" / "blend" / "blend.json"), "--tokenizer", str(run / "tokenizer"), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _losses(out / "train_log.jsonl")


def _runs(db: Path) -> list[tuple[str, str, str | None]]:
    """(run status, pretrain job status, its error) per run, oldest first."""
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT r.status, j.status, j.error FROM runs r LEFT JOIN jobs j ON j.run_id = r.id AND j.rule = 'pretrain'"
            " ORDER BY r.started_at, j.id"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("run_dir", [60], indirect=True)
def test_killing_the_trainer_keeps_its_checkpoints_and_the_rerun_resumes(run_dir):
    workdir, config, run = run_dir
    train = run / "train"
    head = _snakemake(workdir, config, wait=False)
    _wait_for_checkpoint(train, head)
    trainer = _trainer(head)
    ranks = trainer.children(recursive=True)
    trainer.kill()
    # the rule fails at once: no rank or helper is left holding the `| tee` pipe open
    assert head.wait(timeout=120) != 0
    assert not psutil.wait_procs(ranks, timeout=30)[1]
    saved = sorted(p.name for p in (train / "checkpoints").iterdir() if p.name.startswith("iter_"))
    assert saved and not (train / "train_log.jsonl").exists()

    rerun = _snakemake(workdir, config)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = (run / "logs" / "pretrain.log").read_text()
    resumed = json.loads(summary[summary.index("{\n"):])["resumed_from"]
    assert resumed is not None and f"iter_{resumed:07d}" in saved
    assert _losses(train / "train_log.jsonl") == _uninterrupted(run, workdir / "reference")
    (first_run, first_job, error), *_, (last_run, last_job, _) = _runs(workdir / "results" / "prov.sqlite")
    assert (first_run, first_job) == ("failed", "failed") and "exit status" in error
    assert (last_run, last_job) == ("success", "success")


# long enough that the orphan still trains when the rerun (unlock, DAG, upstream checks) reaches pretrain
@pytest.mark.parametrize("run_dir", [400], indirect=True)
def test_killing_the_snakemake_head_stops_the_orphan_and_the_rerun_resumes(run_dir):
    workdir, config, run = run_dir
    train = run / "train"
    head = _snakemake(workdir, config, wait=False)
    _wait_for_checkpoint(train, head)
    orphan = _trainer(head)
    os.kill(head.pid, signal.SIGKILL)  # the head only: the trainer runs on as an orphan
    head.wait()
    assert orphan.is_running()

    unlock = _snakemake(workdir, config, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = _snakemake(workdir, config)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not orphan.is_running()
    log = (run / "logs" / "pretrain.log").read_text()
    assert f"is still run by pid {orphan.pid}" in log and "asking it to save a checkpoint and stop" in log
    resumed = json.loads(log[log.index("{\n"):])["resumed_from"]
    assert resumed is not None and resumed >= 10
    assert _losses(train / "train_log.jsonl") == _uninterrupted(run, workdir / "reference")
    runs = _runs(workdir / "results" / "prov.sqlite")
    (killed_run, killed_job, _), *_, (last_run, last_job, _) = runs
    assert (killed_run, killed_job) == ("interrupted", "interrupted"), runs
    assert (last_run, last_job) == ("success", "success")
