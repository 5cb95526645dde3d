"""Evaluation during training on the real local Slurm cluster: the launcher submits each due
checkpoint's evaluation as its own one-task Slurm job while the training job runs."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from euroflow.train.cli import main as train_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import train_corpus as corpus  # noqa: E402

pytestmark = pytest.mark.slurm


def test_each_due_checkpoint_is_evaluated_by_its_own_slurm_job(tmp_path, slurm_cluster, data_root, monkeypatch):
    monkeypatch.setenv("SBATCH_ACCOUNT", "euroflow")
    inputs = corpus.build(data_root, tmp_path / "inputs")
    config = corpus.tiny_config(train_steps=16, checkpoint_interval=4)
    config["evaluation"]["during_training"] = {"every_n_checkpoints": 2, "max_sentences": 4}
    config["paths"] = {"data_root": str(data_root)}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "train"
    assert train_main(["pretrain", "--config", str(config_path), "--blend", str(inputs["blend"]), "--tokenizer", str(inputs["tokenizer"]),
                       "--out", str(out), "--site", "slurm-ci", "--nodes", "1", "--minutes", "10", "--partition", "debug"]) == 0
    points = [json.loads((out / "evaluations" / f"iter_{step:07d}.json").read_text()) for step in (8, 16)]
    assert [p["step"] for p in points] == [8, 16] and all(len(p["languages"]) == len(config["evaluation"]["bpb_languages"]) for p in points)
    for _ in range(30):  # accounting lags the jobs' ends by a moment
        accounting = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobName,State", "--name", "euroflow-eval-train-test",
                                     "--starttime", "now-1hour"], capture_output=True, text=True).stdout.split()
        if accounting.count("euroflow-eval-train-test|COMPLETED") >= 2:
            break
        time.sleep(1)
    assert accounting.count("euroflow-eval-train-test|COMPLETED") >= 2, accounting
    assert not (out / "evaluations" / ".snapshots").exists()
