"""Environment snapshots, and secrets that never reach the database file."""

from __future__ import annotations

import hashlib
import os
import sqlite3

from prov_workflow import DB_RELATIVE, make_workflow, snakemake

from euroflow.provenance.environment import (
    REDACTED,
    is_secret,
    redact_command,
    site_name,
    snakemake_profile,
    snapshot,
)

SECRETS = {
    "HF_TOKEN": "hf_s3cr3tTokenValue0001",
    "WANDB_API_KEY": "wandbs3cr3tKey0002",
    "EUROFLOW_DB_PASSWORD": "passw0rdValue0003",
    "CLUSTER_SECRET": "clusterS3cretValue0004",
}


def test_secret_names():
    for name in ("HF_TOKEN", "GITHUB_TOKEN", "AWS_SECRET", "DB_PASSWORD", "SSH_KEY", "WANDB_API_KEY", "hf_token"):
        assert is_secret(name), name
    for name in ("SLURM_JOB_ID", "NCCL_SOCKET_IFNAME", "HF_HUB_OFFLINE", "KEYBOARD", "TOKENIZERS_PARALLELISM"):
        assert not is_secret(name), name
    assert redact_command("snakemake --config hf_token=abc lr=3") == f"snakemake --config hf_token={REDACTED} lr=3"


def test_snapshot_records_the_build_and_redacts(monkeypatch):
    env = {"SLURM_JOB_ID": "42", "NCCL_IB_TIMEOUT": "22", "LOADEDMODULES": "LUMI/24.03:partition/G", **SECRETS}
    snap = snapshot(env)
    assert snap["variables"]["SLURM_JOB_ID"] == "42" and snap["loaded_modules"] == ["LUMI/24.03", "partition/G"]
    assert all(snap["variables"][name] == REDACTED for name in SECRETS)
    assert snap["torch"].startswith("2.13.0") and snap["cuda"] is None
    assert {"snakemake", "megatron-core", "torch"} <= set(snap["packages"])


def test_secrets_in_the_environment_never_reach_the_database(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    work = make_workflow(tmp_path / "wf")
    proc = snakemake(work, "out/bundle", "--config", f"hf_token={SECRETS['HF_TOKEN']}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    db = work / DB_RELATIVE
    content = b"".join(p.read_bytes() for p in db.parent.iterdir())
    for value in SECRETS.values():
        assert value.encode() not in content
    con = sqlite3.connect(db)
    (variables, packages), = con.execute("select variables, packages from environments").fetchall()
    assert '"HF_TOKEN": "<redacted>"' in variables and '"snakemake"' in packages
    assert os.environ["HF_TOKEN"] == SECRETS["HF_TOKEN"]


def test_profile_and_site_of_a_run(tmp_path):
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "leonardo.yaml").write_text("name: leonardo\n")
    assert snakemake_profile("snakemake --profile profiles/leonardo -n", {}) == "profiles/leonardo"
    assert snakemake_profile("snakemake --workflow-profile=profiles/x", {}) == "profiles/x"
    assert snakemake_profile("snakemake -n", {"SNAKEMAKE_PROFILE": "profiles/lumi"}) == "profiles/lumi"
    assert site_name("profiles/leonardo/", tmp_path / "sites", {}) == "leonardo"
    assert site_name("profiles/mine", tmp_path / "sites", {}) is None
    assert site_name(None, tmp_path / "sites", {"EUROFLOW_SITE": "lumi"}) == "lumi"


def test_container_digest_of_a_sif_file(tmp_path):
    image = tmp_path / "euroflow.sif"
    image.write_bytes(b"not really a SIF, but a file")
    snap = snapshot({"APPTAINER_CONTAINER": str(image)})
    assert snap["container_image"] == str(image)
    assert snap["container_digest"] == "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    assert snapshot({"APPTAINER_CONTAINER": str(image), "EUROFLOW_CONTAINER_DIGEST": "sha256:ab"})["container_digest"] == "sha256:ab"
