"""sites/<name>.yaml: every site validates, key facts hold, and bad site files get one-line errors."""

from __future__ import annotations

import shutil

import pytest
import yaml

from euroflow import sites
from euroflow.errors import EuroflowError

CLUSTERS = ["leonardo", "lumi", "marenostrum5", "snellius"]


def test_every_site_file_validates():
    assert sites.names() == sorted(CLUSTERS + ["local", "slurm-ci"])
    for name in sites.names():
        site = sites.load(name)
        assert site["name"] == name


@pytest.mark.parametrize(
    "name, node, gpus, gpu_memory_gb, tasks, cpus",
    [
        ("lumi", "gpu", 8, 64, 8, 7),            # 4x MI250X = 8 GCDs of 64 GB, 7 cores per GCD
        ("leonardo", "gpu", 4, 64, 4, 8),        # 4x A100 64 GB, 32 cores
        ("marenostrum5", "gpu", 4, 64, 4, 20),   # 4x H100 64 GB, 80 cores
        ("snellius", "a100", 4, 40, 4, 16),
        ("snellius", "h100", 4, 94, 4, 16),
    ],
)
def test_gpu_nodes_and_one_task_per_gpu(name, node, gpus, gpu_memory_gb, tasks, cpus):
    site = sites.load(name)
    facts = site["nodes"][node]
    assert (facts["gpus"], facts["gpu_memory_gb"]) == (gpus, gpu_memory_gb)
    assert (site["launcher"]["tasks_per_node"], site["launcher"]["cpus_per_task"]) == (tasks, cpus)
    assert site["launcher"]["distributed_backend"] == "nccl"
    assert site["launcher"]["env"]["HF_HUB_OFFLINE"] == "1"  # compute nodes are offline everywhere


def test_partition_limits_from_the_centres():
    lumi = sites.load("lumi")["partitions"]
    assert (lumi["standard-g"]["max_hours"], lumi["standard-g"]["max_nodes"]) == (48, 1024)
    assert (lumi["small-g"]["max_hours"], lumi["dev-g"]["max_hours"]) == (72, 3)
    leonardo = sites.load("leonardo")["partitions"]["boost_usr_prod"]
    assert leonardo["qos"]["normal"]["max_hours"] == 24 and leonardo["qos"]["boost_qos_dbg"]["max_hours"] == 0.5
    mn5 = sites.load("marenostrum5")["partitions"]["acc"]["qos"]
    assert set(mn5) >= {"acc_debug", "acc_ehpc"}
    assert set(sites.load("snellius")["partitions"]) >= {"gpu_a100", "gpu_h100"}
    lumi_env = sites.load("lumi")["launcher"]["env"]
    assert lumi_env["NCCL_SOCKET_IFNAME"] == "hsn0,hsn1,hsn2,hsn3" and "SLURM_NODEID" in lumi_env["MIOPEN_USER_DB_PATH"]
    assert sites.load("leonardo")["launcher"]["env"]["SRUN_CPUS_PER_TASK"] == "${SLURM_CPUS_PER_TASK}"


def test_uncertain_facts_are_said_so():
    for name in CLUSTERS:
        assert sites.load(name)["uncertain"], name


def _broken(tmp_path, name, edit):
    shutil.copytree(sites.SITES_DIR, tmp_path / "sites")
    path = tmp_path / "sites" / f"{name}.yaml"
    site = yaml.safe_load(path.read_text())
    edit(site)
    path.write_text(yaml.safe_dump(site))
    with pytest.raises(EuroflowError) as info:
        sites.load(name, tmp_path / "sites")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_unknown_site_names_the_known_ones():
    with pytest.raises(EuroflowError, match="site 'jupiter': unknown; known sites: leonardo, local, lumi"):
        sites.load("jupiter")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda s: s["partitions"]["standard-g"].update(node="tpu"), "partitions.standard-g.node: 'tpu' is not a key of nodes"),
        (lambda s: s["launcher"].update(cpus_per_task=9), "launcher.cpus_per_task: 8 x 9 exceeds the 56 cores"),
        (lambda s: s["launcher"].update(tasks_per_node=4), "launcher.tasks_per_node: 4, but nodes.gpu has 8 GPUs"),
        (lambda s: s["nodes"]["gpu"].update(gpus="eight"), "nodes.gpu.gpus: 'eight' is not of type 'integer'"),
        (lambda s: s.update(colour="red"), "colour: unknown key"),
        (lambda s: s.pop("account"), "account: required on a Slurm site"),
        (lambda s: s["defaults"].update(gpu_partition="standard-x"), "defaults.gpu_partition: no partition 'standard-x'"),
        (lambda s: s["account"].update(example="proj_1"), "account.example: does not match account.pattern"),
    ],
)
def test_bad_site_file_gets_one_line(tmp_path, edit, expected):
    assert expected in _broken(tmp_path, "lumi", edit)
