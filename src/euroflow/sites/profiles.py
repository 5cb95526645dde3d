"""Snakemake profiles (``profiles/<site>/config.v8+.yaml``) read as the Slurm plugin will use them,
and checked against the site's facts: partitions and QOS exist, runtimes at the last retry fit
their limits, nodes/cores/memory/GPUs fit a node, GPU rules sit on GPU partitions.

Resource values are evaluated with Snakemake's own evaluator (environment variables expanded,
``attempt`` bound), so ``runtime: "60 * attempt"`` means here what it means in a run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from euroflow.config import REPO_ROOT
from euroflow.errors import EuroflowError

PROFILES_DIR = REPO_ROOT / "profiles"
PROFILE_FILE = "config.v8+.yaml"


def profile_path(name: str, profiles_dir: str | os.PathLike = PROFILES_DIR) -> Path:
    return Path(profiles_dir) / name / PROFILE_FILE


def load(name: str, profiles_dir: str | os.PathLike = PROFILES_DIR) -> dict[str, Any]:
    path = profile_path(name, profiles_dir)
    if not path.is_file():
        raise EuroflowError(f"profile {name!r}: no {path}")
    try:
        profile = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise EuroflowError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(profile, dict):
        raise EuroflowError(f"{path}: expected a mapping of Snakemake options")
    profile["_path"] = str(path)
    return profile


def evaluate(name: str, value: Any, attempt: int) -> Any:
    """One resource value as Snakemake evaluates it for a job's ``attempt`` (1 = first try)."""
    if not isinstance(value, str):
        return value
    from snakemake.resources import Resource

    return Resource.cli_evaluator(name, value, wildcards={}, input=[], attempt=attempt, async_run=None)


def attempts(profile: dict) -> int:
    return int(profile.get("retries", 0)) + 1


def rule_resources(profile: dict, rule: str, attempt: int = 1) -> dict[str, Any]:
    """default-resources overridden by set-resources[rule], evaluated for ``attempt``."""
    raw = dict(profile.get("default-resources") or {})
    raw.update((profile.get("set-resources") or {}).get(rule) or {})
    resources = {key: evaluate(key, value, attempt) for key, value in raw.items()}
    threads = (profile.get("set-threads") or {}).get(rule)
    if threads is not None:
        resources.setdefault("_threads", threads)
    return resources


def requests_gpus(resources: dict) -> int:
    """GPUs per node a job asks for (``gpu: N``, ``gres: gpu[:type]:N`` or ``gpus_per_node``)."""
    if resources.get("gpu"):
        return int(str(resources["gpu"]).split(":")[-1])
    if resources.get("gpus_per_node"):
        return int(resources["gpus_per_node"])
    gres = str(resources.get("gres") or "")
    if gres.startswith("gpu"):
        last = gres.split(":")[-1]
        return int(last) if last.isdigit() else 1
    return 0


def limits(site: dict, partition: str, qos: str | None) -> tuple[float, int | None]:
    """(max hours, max nodes) for a job in ``partition`` under ``qos`` (the QOS is the tighter)."""
    part = site["partitions"][partition]
    hours, nodes = part["max_hours"], part.get("max_nodes")
    if qos and qos in part.get("qos", {}):
        hours = min(hours, part["qos"][qos]["max_hours"])
        nodes = part["qos"][qos].get("max_nodes", nodes)
    return hours, nodes


def job_problems(site: dict, rule: str, resources: dict, threads: int, attempt: int, source: str) -> list[str]:
    """What the scheduler would reject (or what cannot run) about one job's resources."""
    where = f"{source}: set-resources.{rule}" if rule != "*" else f"{source}: default-resources"
    partitions = site.get("partitions", {})
    partition = resources.get("slurm_partition")
    if not partition:
        return [f"{where}: no slurm_partition (the site's default CPU partition is {site.get('defaults', {}).get('cpu_partition')!r})"]
    if partition not in partitions:
        return [f"{where}.slurm_partition: {partition!r} is not a partition of {site['name']} ({', '.join(partitions)})"]
    part = partitions[partition]
    node = site["nodes"][part["node"]]
    problems = []
    qos = resources.get("qos")
    if qos and part.get("qos") and qos not in part["qos"]:
        problems.append(f"{where}.qos: {qos!r} is not a QOS of partition {partition} ({', '.join(part['qos'])})")
    max_hours, max_nodes = limits(site, partition, qos)
    runtime = resources.get("runtime")
    if runtime is None:
        problems.append(f"{where}: no runtime (Slurm would apply the partition default)")
    elif float(runtime) > max_hours * 60:
        problems.append(
            f"{where}.runtime: {runtime} min at attempt {attempt} exceeds the {max_hours:g} h limit of "
            f"{partition}{f' (QOS {qos})' if qos else ''}"
        )
    nodes = int(resources.get("nodes") or 1)
    if max_nodes and nodes > max_nodes:
        problems.append(f"{where}.nodes: {nodes} exceeds the {max_nodes} nodes allowed in {partition}{f' (QOS {qos})' if qos else ''}")
    mem_mb = resources.get("mem_mb")
    if mem_mb and float(mem_mb) > node["memory_gb"] * 1000:
        problems.append(f"{where}.mem_mb: {mem_mb} at attempt {attempt} exceeds the {node['memory_gb']} GB of a {part['node']} node")
    cpus = resources.get("cpus_per_task") or threads
    if cpus and cpus > node["cores"]:
        problems.append(f"{where}: {cpus} cores per task exceed the {node['cores']} cores of a {part['node']} node")
    gpus = requests_gpus(resources)
    if gpus and not node.get("gpus"):
        problems.append(f"{where}: asks for GPUs on {partition}, a partition without GPUs")
    elif gpus > node.get("gpus", 0):
        problems.append(f"{where}: asks for {gpus} GPUs, a {part['node']} node has {node['gpus']}")
    return problems


def problems(site: dict, profile: dict, rules: list[str] | None = None) -> list[str]:
    """Every disagreement between ``profile`` and ``site``, at every attempt the retries allow."""
    source = profile.get("_path", "profile")
    if profile.get("executor") != "slurm":
        return [f"{source}: executor: {profile.get('executor')!r}, a Slurm site needs 'slurm'"]
    names = ["*", *sorted(set(rules or []) | set(profile.get("set-resources") or {}))]
    found: list[str] = []
    for rule in names:
        for attempt in range(1, attempts(profile) + 1):
            resources = rule_resources(profile, rule, attempt)
            for problem in job_problems(site, rule, resources, resources.pop("_threads", 1), attempt, source):
                if problem not in found:
                    found.append(problem)
    return found
