"""Cluster facts: ``sites/<name>.yaml``, validated against ``workflow/schemas/site.schema.yaml``.

The one source of truth about a machine (nodes, partitions and their limits, account syntax,
filesystems, container, modules, launcher settings); profiles say how to submit, run configs
what to compute. Every problem is one line naming the file and the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from euroflow.config import REPO_ROOT, schema_error_message
from euroflow.errors import EuroflowError

SITES_DIR = REPO_ROOT / "sites"
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "site.schema.yaml"


def names(sites_dir: str | os.PathLike = SITES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(sites_dir).glob("*.yaml"))


def load(name: str, sites_dir: str | os.PathLike = SITES_DIR) -> dict[str, Any]:
    """The validated facts of site ``name`` (a file under ``sites_dir``)."""
    path = Path(sites_dir) / f"{name}.yaml"
    if not path.is_file():
        raise EuroflowError(f"site {name!r}: unknown; known sites: {', '.join(names(sites_dir))}")
    try:
        site = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise EuroflowError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    # the schema of the checkout the site files belong to (this installation's when it has none)
    schema = Path(sites_dir).parent / "workflow" / "schemas" / "site.schema.yaml"
    return validate(site, str(path), schema if schema.is_file() else SCHEMA_PATH)


def validate(site: Any, source: str, schema_path: str | os.PathLike = SCHEMA_PATH) -> dict[str, Any]:
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(site), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise EuroflowError(f"{source}: {schema_error_message(errors[0])}")
    if site["name"] != Path(source).stem and source.endswith(".yaml"):
        raise EuroflowError(f"{source}: name: {site['name']!r} differs from the file name")
    nodes, partitions = site["nodes"], site.get("partitions", {})
    for pname, partition in partitions.items():
        if partition["node"] not in nodes:
            raise EuroflowError(f"{source}: partitions.{pname}.node: {partition['node']!r} is not a key of nodes")
        for qname, qos in partition.get("qos", {}).items():
            if qos["max_hours"] > partition["max_hours"]:
                raise EuroflowError(f"{source}: partitions.{pname}.qos.{qname}.max_hours: exceeds the partition's {partition['max_hours']}")
    if site["scheduler"] == "slurm":
        if "account" not in site:
            raise EuroflowError(f"{source}: account: required on a Slurm site")
        re.compile(site["account"]["pattern"])
        if site["account"].get("example") and not re.fullmatch(site["account"]["pattern"], site["account"]["example"]):
            raise EuroflowError(f"{source}: account.example: does not match account.pattern")
        for nname, node in nodes.items():
            for key in ("cores", "memory_gb"):
                if key not in node:
                    raise EuroflowError(f"{source}: nodes.{nname}.{key}: required on a Slurm site")
            if node.get("gpus") and "gpu_memory_gb" not in node:
                raise EuroflowError(f"{source}: nodes.{nname}.gpu_memory_gb: required for a GPU node")
        launcher = site["launcher"]
        for nname, node in nodes.items():
            if node.get("gpus"):
                tasks, cpus = launcher.get("tasks_per_node", node["gpus"]), launcher.get("cpus_per_task", 1)
                if tasks != node["gpus"]:
                    raise EuroflowError(f"{source}: launcher.tasks_per_node: {tasks}, but nodes.{nname} has {node['gpus']} GPUs (one task per GPU)")
                if tasks * cpus > node["cores"]:
                    raise EuroflowError(f"{source}: launcher.cpus_per_task: {tasks} x {cpus} exceeds the {node['cores']} cores of nodes.{nname}")
    for key, pname in site.get("defaults", {}).items():
        if key.endswith("_partition") and pname not in partitions:
            raise EuroflowError(f"{source}: defaults.{key}: no partition {pname!r}")
        if key.endswith("_qos"):
            partition = partitions[site["defaults"][key.replace("_qos", "_partition")]]
            if pname not in partition.get("qos", {}):
                raise EuroflowError(f"{source}: defaults.{key}: no QOS {pname!r} in that partition")
    return site
