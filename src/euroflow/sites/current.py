"""Which site this Snakemake run submits to, and what the pretrain rule passes to its launcher."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from euroflow.sites.facts import SITES_DIR, load


def current_site(argv: list[str] | None = None, sites_dir: str | os.PathLike = SITES_DIR,
                 environ: dict[str, str] | None = None) -> str | None:
    """$EUROFLOW_SITE, else the name of the Snakemake profile when ``sites/<name>.yaml`` exists."""
    from euroflow.provenance.environment import site_name, snakemake_profile

    profile = snakemake_profile(shlex.join(sys.argv if argv is None else argv), environ)
    return site_name(profile, sites_dir, environ)


def check_submission_account(basedir: str | os.PathLike, argv: list[str] | None = None,
                             environ: dict[str, str] | None = None) -> None:
    """On a Slurm site, the account the profile submits with must be set and well-formed: in a
    dry run too, where Snakemake would otherwise print ``slurm_account=$SBATCH_ACCOUNT`` as is."""
    from euroflow.provenance.environment import snakemake_profile
    from euroflow.sites import profiles, submission

    argv = sys.argv if argv is None else argv
    sites_dir = Path(basedir) / "sites"
    profile_arg = snakemake_profile(shlex.join(argv), environ)
    site = current_site(argv, sites_dir, environ)
    if not site or not profile_arg:
        return
    facts = load(site, sites_dir)
    if facts["scheduler"] != "slurm":
        return
    profile_dir = Path(profile_arg)
    if not profile_dir.is_dir():
        profile_dir = Path(basedir) / "profiles" / site
    profile = profiles.load(profile_dir.name, profile_dir.parent)
    value = profiles.rule_resources(profile, "*").get("slurm_account")
    if value is None:
        return
    variable = facts["account"]["variable"]
    # Snakemake leaves an unset $VARIABLE as it is
    submission.account(facts, {variable: "" if "$" in str(value) else str(value)})


def pretrain_launch_args(resources: Any, allocations: str, site: str | None = None) -> list[str]:
    """``euroflow train pretrain`` options that submit the training job on a Slurm site (from the
    rule's resources as the profile sets them); none where the run trains on this machine.
    A list: the rule quotes each element (``{params.launch:q}``)."""
    site = site if site is not None else current_site()
    if not site or load(site)["scheduler"] != "slurm":
        return []
    get = resources.get if hasattr(resources, "get") else (lambda key, default=None: getattr(resources, key, default))
    args = ["--site", site, "--nodes", str(get("nodes", 1) or 1), "--minutes", str(get("runtime", 60)), "--allocations", allocations]
    if get("slurm_partition"):
        args += ["--partition", str(get("slurm_partition"))]
    if get("qos"):
        args += ["--qos", str(get("qos"))]
    if get("signal_delay_s"):
        args += ["--signal-delay", str(get("signal_delay_s"))]
    return args
