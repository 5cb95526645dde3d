"""The Snakemake workflow itself: lint-clean, and the dry run plans the whole DAG."""

import os
import subprocess
import sys
from pathlib import Path

from euroflow.workflow import put_euroflow_on_path

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def test_snakemake_lint_is_clean(repo_root):
    proc = subprocess.run([SNAKEMAKE, "--lint"], cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, proc.stdout


def test_dry_run_lists_the_five_stages_for_35_languages(repo_root, tmp_path):
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--profile", "profiles/local", "--forceall", "--config", f"paths={{results: {tmp_path}}}"],
        cwd=repo_root, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    per_language = ("demo_shard", "prepare_shard", "dedup_language", "tokenize_shard")  # the demo: one shard each
    assert [counts[rule] for rule in per_language] == [35] * 4
    for rule in ("language_weights", "train_tokenizer", "blend", "pretrain", "export_hf", "bits_per_byte", "multiple_choice", "int8"):
        assert counts[rule] == 1
    assert counts["gguf"] == 2 and counts["total"] == 154


def test_put_euroflow_on_path_prefers_this_environment(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    put_euroflow_on_path()
    put_euroflow_on_path()
    assert os.environ["PATH"] == os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin"])
