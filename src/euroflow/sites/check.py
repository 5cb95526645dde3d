"""``euroflow site check NAME [--config RUN]``: on a laptop, without Slurm, how every rule of a run
would be submitted on a site, and everything the site would reject.

Checks: the account variable is set and well-formed; the profile's partitions, QOS, runtimes (at
the last retry), nodes, cores, memory and GPUs fit the site; the model fits the GPU memory with
the configured tensor/pipeline parallelism on the pretraining nodes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from euroflow import config as run_config
from euroflow import sites
from euroflow.config import REPO_ROOT
from euroflow.errors import EuroflowError
from euroflow.sites import profiles, submission
from euroflow.sites.dry_run import planned_jobs

DEFAULT_CONFIG = REPO_ROOT / "workflow" / "configs" / "tiny.yaml"


@dataclass
class SiteCheck:
    site: str
    config: str
    account: str | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _simulated_shards(config: dict, workdir: Path) -> list[str]:
    """A config overlay pointing HPLT sources at one empty shard per language, when the real shard
    directory is not on this machine (the DAG has the same rules; only the shard count differs)."""
    source = config["data"]["source"]
    if source["kind"] == "ntrex-demo" or Path(source["shards"]).is_dir():
        return []
    from euroflow.languages import get

    root = workdir / "simulated-shards"
    for lang in config["languages"]:
        shard = root / get(lang).hplt / "part-0001.jsonl.zst"
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.touch()
    overlay = workdir / "simulated-shards.yaml"
    import yaml

    overlay.write_text(yaml.safe_dump({"data": {"source": {"kind": source["kind"], "shards": str(root)}}}), encoding="utf-8")
    return [str(overlay)]


def _model_fit(config: dict, site: dict, resources: dict) -> tuple[dict[str, Any], list[str]]:
    from euroflow.sites.plan import memory_fit

    training = config["training"]
    partition = resources.get("slurm_partition") or site["defaults"]["gpu_partition"]
    node = site["nodes"][site["partitions"][partition]["node"]]
    if not node.get("gpus"):
        return {}, [f"{site['name']}: pretrain partition {partition} has no GPUs"]
    tp, pp = training["tensor_model_parallel_size"], training["pipeline_model_parallel_size"]
    nodes = int(resources.get("nodes") or 1)
    world = nodes * node["gpus"]
    if world % (tp * pp):
        return {}, [f"training: TP x PP = {tp * pp} does not divide the {world} GPUs of the pretrain job"]
    result = memory_fit(config, node, nodes)
    mem, fitting = result["memory"], result["fitting"]
    total = result["estimate"].total / 2**30
    fit = {"tp": tp, "pp": pp, "dp": mem["dp"], "gpus": world, "gib_per_gpu": round(total, 1), "gpu_memory_gb": node["gpu_memory_gb"]}
    if mem["fits"]:
        return fit, []
    same_batch = fitting["layouts"] if fitting["micro_batch_size"] == training["micro_batch_size"] else []
    alternatives = ", ".join(f"TP={o['tp']} PP={o['pp']}" for o in same_batch[:3]) or "none on this many nodes"
    return fit, [
        f"training: the model needs {total:.1f} GiB per GPU with TP={tp} PP={pp} (DP={mem['dp']}); "
        f"a {node['gpu']} has {node['gpu_memory_gb']} GB. Fits with: {alternatives}"
    ]


def check(name: str, config_path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> SiteCheck:
    environ = dict(os.environ if environ is None else environ)
    site = sites.load(name)
    config_path = str(config_path or DEFAULT_CONFIG)
    result = SiteCheck(site=name, config=config_path)
    config = run_config.load(config_path)
    if site["scheduler"] != "slurm":
        result.notes.append(f"{name}: no scheduler; every job runs on this machine (snakemake --profile profiles/{name})")
        return result
    profile = profiles.load(name)
    try:
        result.account = submission.account(site, environ)
    except EuroflowError as exc:
        result.problems.append(str(exc))
    with tempfile.TemporaryDirectory(prefix="euroflow-site-check-") as tmp:
        overlays = _simulated_shards(config, Path(tmp))
        if overlays:
            result.notes.append(f"data.source.shards ({config['data']['source']['shards']}) is not on this machine: planned with one shard per language")
        jobs = planned_jobs(profiles.profile_path(name).parent, [config_path, *overlays], workdir=tmp,
                            environ={site["account"]["variable"]: result.account or site["account"]["example"]})
    by_rule: dict[str, dict[str, Any]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], {**job, "count": 0})["count"] += 1
    result.problems += profiles.problems(site, profile, sorted(by_rule))
    workdir = "<workdir>"
    for rule, job in by_rule.items():
        if rule == "all":
            continue
        resources = dict(job["resources"])
        if rule == "pretrain":
            params = submission.training_parameters(site, resources, account_name=result.account, job_name=f"euroflow-pretrain-{config['run']['name']}")
            folder = (Path(config["paths"]["results"]) / config["run"]["name"] / "train" / "submitit").absolute()
            result.training = {
                "parameters": params,
                "script": submission.training_script(params, folder, submission.python_command(site, result.account)),
            }
            fit, fit_problems = _model_fit(config, site, resources)
            result.training["memory"] = fit
            result.problems += fit_problems
            continue
        threads = (profile.get("set-threads") or {}).get(rule, job["threads"])
        line = submission.sbatch_line(
            submission.PluginJob(rule, {**resources, "_wildcards": job["wildcards"]}, int(threads)),
            profile, account_name=result.account, workdir=workdir,
        )
        result.rules.append({"rule": rule, "jobs": job["count"], "sbatch": line})
    return result


def render(result: SiteCheck) -> str:
    out = [f"# euroflow site check {result.site} --config {result.config}"]
    out += [f"# note: {note}" for note in result.notes]
    for rule in result.rules:
        out.append(f"\n## {rule['rule']} ({rule['jobs']} job{'s' if rule['jobs'] != 1 else ''})\n{rule['sbatch']} --wrap=\"<snakemake job step>\"")
    if result.training:
        mem = result.training.get("memory") or {}
        out.append(
            "\n## pretrain: submitted by the rule itself through submitit (one task per GPU, requeued at the walltime)"
        )
        if mem:
            out.append(f"# memory: {mem['gib_per_gpu']} GiB per GPU of {mem['gpu_memory_gb']} GB with TP={mem['tp']} PP={mem['pp']} DP={mem['dp']} on {mem['gpus']} GPUs")
        out.append(result.training["script"].rstrip())
    return "\n".join(out) + "\n"
