"""`euroflow site check`: per rule the exact sbatch line (the Slurm plugin's own code), the submitit
script of pretraining (4 nodes, golden per site), and one clear error per thing a site would reject."""

import json
import os
from pathlib import Path

import pytest
import yaml

from euroflow import sites
from euroflow.cli import main
from euroflow.config import REPO_ROOT
from euroflow.errors import EuroflowError
from euroflow.sites import check, profiles, submission

CLUSTERS = ["leonardo", "lumi", "marenostrum5", "snellius"]
GOLDEN = Path(__file__).parent / "golden"
EU_1B = REPO_ROOT / "workflow" / "configs" / "eu-1b.yaml"


def _account(name):
    spec = sites.load(name)["account"]
    return {spec["variable"]: spec["example"]}


def _pretrain_script(name):
    site, profile = sites.load(name), profiles.load(name)
    account = _account(name)[site["account"]["variable"]]
    resources = profiles.rule_resources(profile, "pretrain")
    params = submission.training_parameters(site, resources, account_name=account, job_name="euroflow-pretrain-eu-1b")
    folder = "/scratch/euroflow/results/eu-1b/train/submitit"
    return params, submission.training_script(params, folder, submission.python_command(site, account))


@pytest.mark.parametrize("name", CLUSTERS)
def test_four_node_pretraining_submission_matches_the_golden_script(name):
    params, script = _pretrain_script(name)
    assert params["nodes"] == 4
    golden = GOLDEN / f"{name}-pretrain-4-nodes.sbatch"
    if os.environ.get("EUROFLOW_UPDATE_GOLDEN"):
        golden.write_text(script)
    assert script == golden.read_text(), f"rendered script differs from {golden} (EUROFLOW_UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("name", CLUSTERS)
def test_pretraining_is_one_task_per_gpu_with_the_site_launcher(name):
    site = sites.load(name)
    params, script = _pretrain_script(name)
    node = site["nodes"][site["partitions"][params["partition"]]["node"]]
    assert params["ntasks_per_node"] == params["gpus_per_node"] == node["gpus"]
    assert f"#SBATCH --signal=USR2@{params['signal_delay_s']}" in script
    assert "srun --unbuffered" in script and "submitit.core._submit" in script
    for key, value in site["launcher"]["env"].items():
        assert f"export {key}=" in script and str(value).split("$")[0] in script
    assert "HF_HUB_OFFLINE=1" in script


def test_lumi_binds_each_task_to_its_gcd_cores():
    _, script = _pretrain_script("lumi")
    assert "--cpu-bind=mask_cpu:0xfe000000000000," in script
    assert "export NCCL_SOCKET_IFNAME=hsn0,hsn1,hsn2,hsn3" in script
    assert 'export MIOPEN_USER_DB_PATH="/tmp/${USER}-miopen-cache-${SLURM_NODEID}"' in script


@pytest.mark.parametrize("name", CLUSTERS)
def test_site_check_prints_every_rule(name, capsys, monkeypatch):
    for key, value in _account(name).items():
        monkeypatch.setenv(key, value)
    assert main(["site", "check", name, "--config", str(EU_1B)]) == 0
    out = capsys.readouterr().out
    assert "planned with one shard per language" in out  # eu-1b's HPLT shards are not on this machine
    for rule in ("prepare_shard", "train_tokenizer", "tokenize_shard", "bits_per_byte", "gguf"):
        assert f"## {rule} (" in out
    assert "## prepare_shard (35 jobs)" in out
    assert f"-A {_account(name)[sites.load(name)['account']['variable']]}" in out
    assert "#SBATCH --nodes=4" in out


def test_missing_account_variable_is_an_error(capsys, monkeypatch):
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)
    assert main(["site", "check", "lumi", "--config", str(EU_1B)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "euroflow: error: lumi: $SBATCH_ACCOUNT is not set; export SBATCH_ACCOUNT=<your project account> (e.g. project_462000353)" in err
    assert err[-1] == "site check lumi: 1 problem; nothing was submitted"


def test_malformed_account_is_an_error(monkeypatch):
    monkeypatch.setenv("SBATCH_ACCOUNT", "ehpc123")
    result = check.check("lumi", EU_1B)
    assert result.problems == ["lumi: $SBATCH_ACCOUNT='ehpc123' does not look like a lumi account (pattern ^project_46[0-9]{7}$, e.g. project_462000353)"]


def test_unknown_site_is_an_error(capsys):
    assert main(["site", "check", "jupiter", "--config", str(EU_1B)]) == 1
    assert "euroflow: error: site 'jupiter': unknown; known sites: leonardo, local, lumi, marenostrum5, slurm-ci, snellius" in capsys.readouterr().err


def test_runtime_over_the_partition_limit_is_an_error(monkeypatch):
    site = sites.load("leonardo")
    with pytest.raises(EuroflowError, match=r"leonardo: pretrain runtime 2880 min exceeds the 24 h limit of boost_usr_prod \(QOS normal\)"):
        submission.training_parameters(site, {"slurm_partition": "boost_usr_prod", "qos": "normal", "nodes": 4, "runtime": 2880},
                                       account_name="x", job_name="j")


def test_model_that_does_not_fit_the_gpus_is_an_error(tmp_path, monkeypatch):
    config = yaml.safe_load(EU_1B.read_text())
    # the s x s scores of 4 sequences of 4096 under the unfused attention, Adam's state on every GPU
    config["training"].update(micro_batch_size=4, attention="unfused", distributed_optimizer=False, overlap_param_gather=False)
    path = tmp_path / "eu-1b-mbs4.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SBATCH_ACCOUNT", "project_462000353")
    result = check.check("lumi", path)
    assert len(result.problems) == 1
    problem = result.problems[0]  # the message of euroflow plan, for the 4 nodes profiles/lumi submits
    assert problem.startswith("training.tensor_model_parallel_size/pipeline_model_parallel_size: TP=1 PP=1 needs 205.5 GiB per GPU")
    assert "usable of a AMD MI250X GCD on lumi; layouts that fit on 4 nodes: TP=8 PP=1" in problem


def test_local_site_has_nothing_to_submit(capsys):
    assert main(["site", "check", "local", "--config", str(EU_1B)]) == 0
    assert "no scheduler" in capsys.readouterr().out


def test_site_check_and_plan_agree_and_end_with_a_verdict(capsys, monkeypatch):
    monkeypatch.setenv("SBATCH_ACCOUNT", "project_462000353")
    result = check.check("lumi", EU_1B)
    assert result.problems == [] and result.plan["nodes"] == 4 and result.plan["slurm"]["jobs"] == 3
    assert result.training["parameters"]["nodes"] == result.plan["nodes"]
    assert result.verdict.startswith("site check lumi: OK: 23 rules; pretrain on 4 nodes (32 GPUs), TP=1 PP=1 DP=32, 35.4 GiB per GPU, "
                                     "105.5 h in 3 chained jobs, 3,376 GPU-hours")
    assert main(["plan", "--site", "lumi", "--config", str(EU_1B), "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert {k: planned[k] for k in ("nodes", "gpus", "hours", "slurm")} == {k: result.plan[k] for k in ("nodes", "gpus", "hours", "slurm")}


def test_a_layout_the_trainer_would_refuse_fails_the_site_check(tmp_path, monkeypatch):
    """The demo config on LUMI: 4 nodes x 8 GCDs = 32 data-parallel ranks for a global batch of 16."""
    monkeypatch.setenv("SBATCH_ACCOUNT", "project_462000353")
    result = check.check("lumi", REPO_ROOT / "workflow" / "configs" / "tiny.yaml")
    assert result.problems == [
        "profiles/lumi/config.v8+.yaml: set-resources.pretrain.nodes: training.global_batch_size: 16 is not a multiple of "
        "micro_batch_size x data-parallel size = 8 x 32 (32 ranks of 4 nodes x 8 GPUs / TP x PP 1)"
    ]
    assert result.verdict == "site check lumi: 1 problem; nothing was submitted"


def test_site_check_reads_the_checkout_it_runs_in(tmp_path, monkeypatch):
    """A second clone with its own edit of profiles/lumi, and a data folder of its own: both count."""
    import shutil

    clone = tmp_path / "clone"
    clone.mkdir()
    for part in ("Snakefile", "workflow", "profiles", "sites", "envs"):
        (shutil.copytree if (REPO_ROOT / part).is_dir() else shutil.copy)(REPO_ROOT / part, clone / part)
    profile = clone / "profiles" / "lumi" / "config.v8+.yaml"
    profile.write_text(profile.read_text().replace("pretrain: {slurm_partition: \"'standard-g'\", nodes: 4,",
                                                   "pretrain: {slurm_partition: \"'standard-g'\", nodes: 8,"))
    config = yaml.safe_load(EU_1B.read_text())
    config["data"]["source"]["shards"] = "hplt"  # relative to the clone, where it exists
    for code in ("bul_Cyrl", "ces_Latn"):
        (clone / "hplt" / code).mkdir(parents=True)
        for n in (1, 2):
            (clone / "hplt" / code / f"{n}.jsonl.zst").touch()
    config["languages"] = ["bg", "cs"]
    config["evaluation"]["bpb_languages"] = ["bg", "cs"]
    (clone / "run.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SBATCH_ACCOUNT", "project_462000353")
    monkeypatch.delenv("EUROFLOW_DATA", raising=False)
    monkeypatch.chdir(clone)
    result = check.check("lumi", "run.yaml")
    assert result.checkout == str(clone) and result.problems == []
    # the clone's ../shared does not exist: the evaluation sets are planned with stand-ins, and said so
    assert [note for note in result.notes if note.startswith("paths.data_root (") and note.endswith("planned with empty stand-ins")]
    assert result.training["parameters"]["nodes"] == 8 and result.plan["nodes"] == 8
    assert {r["rule"]: r["jobs"] for r in result.rules}["prepare_shard"] == 4  # the clone's own shards, not simulated
    assert not any("simulated" in note or "one shard per language" in note for note in result.notes)
    monkeypatch.chdir(tmp_path)
    again = check.check("lumi", clone / "run.yaml", directory=clone)
    assert again.checkout == str(clone) and again.plan["nodes"] == 8
