"""Profiles and sites agree: every partition and QOS a profile names exists on its site, and every
runtime, memory, core and GPU request fits at every retry. Snakemake plans each profile on a laptop."""

import subprocess
import sys

import pytest
import yaml

from euroflow import sites
from euroflow.config import REPO_ROOT
from euroflow.sites import profiles

CLUSTERS = ["leonardo", "lumi", "marenostrum5", "snellius"]


@pytest.mark.parametrize("name", CLUSTERS)
def test_profile_agrees_with_site(name):
    profile = profiles.load(name)
    assert profile["executor"] == "slurm"
    assert profiles.problems(sites.load(name), profile) == []


@pytest.mark.parametrize("name", CLUSTERS)
def test_profile_scales_runtime_and_memory_with_the_attempt(name):
    profile = profiles.load(name)
    assert profile["retries"] >= 1
    first, last = (profiles.rule_resources(profile, "prepare_shard", a) for a in (1, profiles.attempts(profile)))
    assert last["runtime"] == first["runtime"] * profiles.attempts(profile)
    assert last["mem_mb"] == first["mem_mb"] * profiles.attempts(profile)


@pytest.mark.parametrize("name", CLUSTERS)
def test_profile_reads_the_account_from_the_site_variable(name, monkeypatch):
    variable = sites.load(name)["account"]["variable"]
    monkeypatch.setenv(variable, "proj_x")
    assert profiles.rule_resources(profiles.load(name), "blend")["slurm_account"] == "proj_x"


def _broken(tmp_path, name, **set_resources):
    profile = profiles.load(name)
    profile["set-resources"] = {**profile["set-resources"], **set_resources}
    path = tmp_path / name / profiles.PROFILE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({k: v for k, v in profile.items() if not k.startswith("_")}))
    return profiles.load(name, tmp_path)


def test_unknown_partition_is_named(tmp_path):
    found = profiles.problems(sites.load("lumi"), _broken(tmp_path, "lumi", blend={"slurm_partition": "'gpu'"}))
    assert found == [f"{tmp_path}/lumi/config.v8+.yaml: set-resources.blend.slurm_partition: 'gpu' is not a partition of lumi "
                     "(standard-g, small-g, dev-g, standard, small, debug)"]


def test_runtime_over_the_limit_at_the_last_retry_is_named(tmp_path):
    # dev-g allows 3 h: 80 min x 3 attempts = 240 min is over, 80 and 160 are not
    found = profiles.problems(sites.load("lumi"), _broken(tmp_path, "lumi", blend={"slurm_partition": "'dev-g'", "runtime": "80 * attempt"}))
    assert found == [f"{tmp_path}/lumi/config.v8+.yaml: set-resources.blend.runtime: 240 min at attempt 3 exceeds the 3 h limit of dev-g"]


def test_qos_limits_are_tighter_than_the_partition(tmp_path):
    found = profiles.problems(
        sites.load("leonardo"), _broken(tmp_path, "leonardo", pretrain={"slurm_partition": "'boost_usr_prod'", "qos": "'boost_qos_dbg'", "nodes": 4, "runtime": 30})
    )
    assert found == [f"{tmp_path}/leonardo/config.v8+.yaml: set-resources.pretrain.nodes: 4 exceeds the 2 nodes allowed in boost_usr_prod (QOS boost_qos_dbg)"]


def test_gpu_request_on_a_cpu_partition_is_named(tmp_path):
    found = profiles.problems(sites.load("snellius"), _broken(tmp_path, "snellius", bits_per_byte={"gpu": 1, "tasks_per_gpu": 0}))
    assert found == [f"{tmp_path}/snellius/config.v8+.yaml: set-resources.bits_per_byte: asks for GPUs on genoa, a partition without GPUs"]


def _dry_run(name: str, workdir, account: str | None, data_root) -> subprocess.CompletedProcess:
    # run elsewhere: the tiny config's relative data root does not resolve from workdir
    env = {"PATH": f"{REPO_ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "EUROFLOW_DATA": str(data_root)}
    if account is not None:
        env[sites.load(name)["account"]["variable"]] = account
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-F", "--profile", str(REPO_ROOT / "profiles" / name),
         "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(REPO_ROOT / "workflow" / "configs" / "tiny.yaml")],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env,
    )


@pytest.mark.parametrize("name", CLUSTERS)
def test_snakemake_plans_every_site_profile_without_slurm(name, tmp_path, data_root):
    proc = _dry_run(name, tmp_path, sites.load(name)["account"]["example"], data_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "total" in proc.stdout and "pretrain" in proc.stdout


@pytest.mark.parametrize("name", CLUSTERS)
def test_a_dry_run_without_the_account_stops_with_one_line(name, tmp_path, data_root):
    site = sites.load(name)
    variable = site["account"]["variable"]
    unset = _dry_run(name, tmp_path, None, data_root)
    assert unset.returncode == 1
    errors = [line for line in unset.stderr.splitlines() if "error" in line]
    assert errors == [f"euroflow: error: {name}: ${variable} is not set; export {variable}=<your project account> (e.g. {site['account']['example']})"]
    assert "pretrain" not in unset.stdout
    malformed = _dry_run(name, tmp_path, "not an account", data_root)
    assert malformed.returncode == 1
    assert f"euroflow: error: {name}: ${variable}='not an account' does not look like a {name} account" in malformed.stderr
