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
    # the demo: one shard each, and all of a language's dedup bands in one job (data.dedup_band_jobs: 1)
    per_language = ("demo_shard", "contamination_index", "prepare_shard", "dedup_band", "dedup_language", "tokenize_shard",
                    "merge_language")
    assert [counts[rule] for rule in per_language] == [35] * 7
    for rule in ("language_weights", "train_tokenizer", "blend", "pretrain", "export_hf", "bits_per_byte", "multiple_choice", "lm_eval", "learning_curve", "int8",
                 "imatrix", "gguf_kquant", "quantization_quality", "quantization_gates"):
        assert counts[rule] == 1
    assert counts["gguf"] == 2 and counts["data_bundle"] == 1 and counts["total"] == 265


def test_put_euroflow_on_path_prefers_this_environment(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    put_euroflow_on_path()
    put_euroflow_on_path()
    assert os.environ["PATH"] == os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin"])


def _eu_1b_with_fake_shards(repo_root, tmp_path):
    """eu-1b.yaml as shipped, with its HPLT shards (empty files: a dry run only lists them) and results under tmp_path."""
    import yaml

    from euroflow import languages

    cfg = yaml.safe_load((repo_root / "workflow" / "configs" / "eu-1b.yaml").read_text())
    shards = tmp_path / "hplt"
    for language in languages.LANGUAGES.values():
        (shards / language.hplt).mkdir(parents=True)
        (shards / language.hplt / "1.jsonl.zst").touch()
    cfg["data"]["source"]["shards"] = str(shards)
    cfg["paths"].update(results=str(tmp_path / "results"), provenance_db=str(tmp_path / "prov.sqlite"))
    path = tmp_path / "eu-1b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_run_config_is_exactly_the_named_file(repo_root, tmp_path):
    """No demo value leaks into a production run: the config Snakemake resolves for eu-1b is the one
    `euroflow config check --print` shows, with the same hash (tiny.yaml's max_mc_items: 100 stays out)."""
    import json

    from euroflow import config

    path = _eu_1b_with_fake_shards(repo_root, tmp_path)
    dry = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/local", "--configfile", str(path)],
                         cwd=repo_root, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "tiny.yaml" not in dry.stdout + dry.stderr
    resolved = json.loads((tmp_path / "results" / "eu-1b" / "config.resolved.json").read_text())
    check = subprocess.run([sys.executable, "-m", "euroflow.cli", "config", "check", str(path), "--print"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert resolved == json.loads(check.stdout)
    assert "max_mc_items" not in resolved["evaluation"]
    summary = subprocess.run([sys.executable, "-m", "euroflow.cli", "config", "check", str(path)], capture_output=True, text=True)
    assert f"hash {config.config_hash(resolved)[:12]}" in summary.stdout


def test_a_config_missing_a_section_stops_the_workflow_as_config_check_does(repo_root, tmp_path):
    import yaml

    cfg = yaml.safe_load((repo_root / "workflow" / "configs" / "tiny.yaml").read_text())
    del cfg["model"]
    cfg["paths"] = {"results": str(tmp_path / "results"), "provenance_db": str(tmp_path / "prov.sqlite")}
    path = tmp_path / "no-model.yaml"
    path.write_text(yaml.safe_dump(cfg))
    check = subprocess.run([sys.executable, "-m", "euroflow.cli", "config", "check", str(path)], capture_output=True, text=True)
    run = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/local", "--configfile", str(path)],
                         cwd=repo_root, capture_output=True, text=True)
    expected = f"euroflow: error: {path}: <top level>: 'model' is a required property"
    assert check.returncode == 1 and check.stderr.strip() == expected
    assert run.returncode == 1 and expected in run.stderr.splitlines()
    assert "Traceback" not in run.stderr and not (tmp_path / "results").exists()


def test_a_site_dry_run_without_the_data_says_what_is_missing_in_one_line(repo_root, tmp_path):
    env = {**os.environ, "SBATCH_ACCOUNT": "project_462000353"}
    proc = subprocess.run([SNAKEMAKE, "-n", "--profile", "profiles/lumi", "--configfile", "workflow/configs/eu-1b.yaml",
                           "--directory", str(tmp_path)], cwd=repo_root, capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("euroflow: error:")]
    assert len(errors) == 1 and "data.source.shards: data/hplt-v2-cleaned" in errors[0], proc.stderr
    assert "is not a directory on this machine" in errors[0] and "euroflow site check" in errors[0]
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
