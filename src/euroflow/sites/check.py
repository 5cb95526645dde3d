"""``euroflow site check NAME --config RUN [--directory DIR]``: on a laptop, without Slurm, how every
rule of a run would be submitted on a site, and everything the site or the trainer would reject.

It reads the checkout in the working directory (or ``--directory``): its Snakefile, profiles,
site files and schemas. Checks: the account variable is set and well-formed; the profile's
partitions, QOS, runtimes (at the last retry), nodes, cores, memory and GPUs fit the site; the
pretraining job's ranks can run the configured TP x PP and batch (the trainer's own start-up check)
and the model fits their GPU memory; the same plan as ``euroflow plan`` (nodes, hours, chained jobs)
for what the profile submits. It ends with a one-line verdict.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from euroflow import checkout as checkouts
from euroflow import config as run_config
from euroflow import sites
from euroflow.errors import EuroflowError
from euroflow.sites import profiles, submission
from euroflow.sites.dry_run import planned_jobs


@dataclass
class SiteCheck:
    site: str
    config: str
    checkout: str = ""
    account: str | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.problems:
            return f"site check {self.site}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}; nothing was submitted"
        if self.plan is None:
            return f"site check {self.site}: OK (no scheduler, everything runs here)"
        p = self.plan
        return (
            f"site check {self.site}: OK: {len(self.rules) + 1} rules; pretrain on {p['nodes']} nodes ({p['gpus']} GPUs), "
            f"TP={p['memory']['tp']} PP={p['memory']['pp']} DP={p['memory']['dp']}, {p['memory']['gib']['total']:.1f} GiB per GPU, "
            f"{p['hours']['wall']:,.1f} h in {p['slurm']['jobs']} chained job{'s' if p['slurm']['jobs'] != 1 else ''}, "
            f"{p['hours']['gpu']:,.0f} GPU-hours"
            + (f" ({p['hours']['billed']['amount']:,.0f} {p['hours']['billed']['unit']}s billed)" if p["hours"].get("billed") else "")
        )


def _absolute(value: str) -> str:
    return str(Path(value).expanduser().absolute())


def _overlay(config: dict, workdir: Path) -> tuple[list[str], list[str], str]:
    """Config overlays for the dry run, which runs in a scratch directory: the paths the config gives
    relative to here made absolute, and, when the HPLT shards are not on this machine, one empty shard
    per language in their place (the DAG has the same rules; only the shard count differs); the same
    for the shared data bundle's files (empty stand-ins)."""
    source = dict(config["data"]["source"])
    overlay: dict[str, Any] = {"paths": {"data_root": _absolute(str(run_config.data_root(config)))}}
    notes = []
    if source["kind"] != "ntrex-demo":
        for key in ("shards", "manifest"):
            if source.get(key):
                source[key] = _absolute(source[key])
        present = Path(source["manifest"]).is_file() if source.get("manifest") else Path(source.get("shards") or "").is_dir()
        if not present:
            from euroflow.languages import get

            root = workdir / "simulated-shards"
            for lang in config["languages"]:
                shard = root / get(lang).hplt / "part-0001.jsonl.zst"
                shard.parent.mkdir(parents=True, exist_ok=True)
                shard.touch()
            where = source.get("manifest") or source.get("shards")
            notes.append(f"data.source ({where}) is not on this machine: planned with one shard per language")
            source = {"kind": source["kind"], "shards": str(root)}
        overlay["data"] = {"source": source}
    from euroflow.paths import RunPaths

    data_root = overlay["paths"]["data_root"]
    needed = RunPaths({**config, "paths": {**config["paths"], "data_root": data_root}}).bundle_inputs
    missing = [name for name in needed if not Path(name).is_file()]
    if missing:
        stand_in = workdir / "simulated-bundle"
        for name in needed:
            path = stand_in / Path(name).relative_to(data_root)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        notes.append(f"paths.data_root ({data_root}) lacks {len(missing)} of the {len(needed)} bundle files the run reads "
                     f"(first {missing[0]}): planned with empty stand-ins")
        overlay["paths"]["data_root"] = str(stand_in)
    path = workdir / "site-check-overlay.yaml"
    path.write_text(yaml.safe_dump(overlay), encoding="utf-8")
    return [str(path)], notes, overlay["paths"]["data_root"]  # the dry run's EUROFLOW_DATA too: it wins over the config


def _pretraining(result: SiteCheck, config: dict, site: dict, resources: dict, profile_dir: Path) -> None:
    """The submitit job, and the plan and feasibility checks of what it will run."""
    from euroflow.sites.plan import _does_not_fit, plan, pretrain_profile

    params = submission.training_parameters(site, resources, account_name=result.account,
                                            job_name=f"euroflow-pretrain-{config['run']['name']}")
    folder = (Path(config["paths"]["results"]) / config["run"]["name"] / "train" / "submitit").absolute()
    result.training = {"parameters": params, "script": submission.training_script(params, folder, submission.python_command(site, result.account))}
    try:
        result.plan = plan(config, site, profile=pretrain_profile(site, profile_dir))
    except EuroflowError as exc:  # the layout the ranks cannot run, a partition without GPUs, ...
        result.problems.append(str(exc))
        return
    if not result.plan["memory"]["fits"]:
        result.problems.append(_does_not_fit(result.plan))


def check(name: str, config_path: str | os.PathLike, environ: dict[str, str] | None = None,
          directory: str | os.PathLike | None = None) -> SiteCheck:
    environ = dict(os.environ if environ is None else environ)
    found = checkouts.find(directory)
    site = sites.load(name, found.sites)
    result = SiteCheck(site=name, config=str(config_path), checkout=str(found.root))
    if Path.cwd().resolve() != found.root:
        result.notes.append(f"checkout: {found.root} (the working directory is not one)" if directory is None else f"checkout: {found.root}")
    config = run_config.load(config_path, found.config_schema)
    if site["scheduler"] != "slurm":
        result.notes.append(f"{name}: no scheduler; every job runs on this machine (snakemake --profile profiles/{name})")
        return result
    profile = profiles.load(name, found.profiles)
    try:
        result.account = submission.account(site, environ)
    except EuroflowError as exc:
        result.problems.append(str(exc))
    with tempfile.TemporaryDirectory(prefix="euroflow-site-check-") as tmp:
        overlays, notes, data_root = _overlay(config, Path(tmp))
        result.notes += notes
        account = {site["account"]["variable"]: result.account or site["account"]["example"]}
        jobs = planned_jobs(profiles.profile_path(name, found.profiles).parent, [str(Path(config_path).absolute()), *overlays],
                            workdir=tmp, environ=account | {run_config.DATA_ROOT_ENV: data_root}, snakefile=found.snakefile)
    by_rule: dict[str, dict[str, Any]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], {**job, "count": 0})["count"] += 1
    result.problems += profiles.problems(site, profile, sorted(by_rule))
    for rule, job in by_rule.items():
        if rule == "all":
            continue
        resources = dict(job["resources"])
        if rule == "pretrain":
            _pretraining(result, config, site, resources, found.profiles)
            continue
        threads = (profile.get("set-threads") or {}).get(rule, job["threads"])
        line = submission.sbatch_line(
            submission.PluginJob(rule, {**resources, "_wildcards": job["wildcards"]}, int(threads)),
            profile, account_name=result.account, workdir="<workdir>",
        )
        result.rules.append({"rule": rule, "jobs": job["count"], "sbatch": line})
    return result


def render(result: SiteCheck) -> str:
    out = [f"# euroflow site check {result.site} --config {result.config}"]
    out += [f"# note: {note}" for note in result.notes]
    for rule in result.rules:
        out.append(f"\n## {rule['rule']} ({rule['jobs']} job{'s' if rule['jobs'] != 1 else ''})\n{rule['sbatch']} --wrap=\"<snakemake job step>\"")
    if result.training:
        out.append("\n## pretrain: submitted by the rule itself through submitit (one task per GPU, requeued at the walltime)")
        if result.plan:
            from euroflow.sites.plan import _rows

            width = max(len(label) for label, _ in _rows(result.plan))
            out += [f"# {label:<{width}}  {value}" for label, value in _rows(result.plan)]
        out.append(result.training["script"].rstrip())
    return "\n".join(out) + "\n"
