"""Which site this Snakemake run submits to, and what the pretrain rule passes to its launcher."""

from __future__ import annotations

import shlex
import sys
from typing import Any

from euroflow.sites.facts import SITES_DIR, load


def current_site(argv: list[str] | None = None) -> str | None:
    """$EUROFLOW_SITE, else the name of the Snakemake profile when ``sites/<name>.yaml`` exists."""
    from euroflow.provenance.environment import site_name, snakemake_profile

    profile = snakemake_profile(shlex.join(sys.argv if argv is None else argv))
    return site_name(profile, SITES_DIR)


def pretrain_launch_args(resources: Any, allocations: str, site: str | None = None) -> str:
    """``euroflow train pretrain`` options that submit the training job on a Slurm site (from the
    rule's resources as the profile sets them); empty where the run trains on this machine."""
    site = site if site is not None else current_site()
    if not site or load(site)["scheduler"] != "slurm":
        return ""
    get = resources.get if hasattr(resources, "get") else (lambda key, default=None: getattr(resources, key, default))
    args = ["--site", site, "--nodes", str(get("nodes", 1) or 1), "--minutes", str(get("runtime", 60)), "--allocations", allocations]
    if get("slurm_partition"):
        args += ["--partition", str(get("slurm_partition"))]
    if get("qos"):
        args += ["--qos", str(get("qos"))]
    if get("signal_delay_s"):
        args += ["--signal-delay", str(get("signal_delay_s"))]
    return shlex.join(args)
