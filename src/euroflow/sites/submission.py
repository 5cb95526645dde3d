"""What gets submitted on a Slurm site, rendered by the same code that submits it.

- Workflow jobs: the sbatch line of snakemake-executor-plugin-slurm (its ``get_submit_command``
  and ``set_gres_string``), for resources as the profile sets them.
- Pretraining: the submitit job (one ``srun`` task per GPU, whole nodes, USR2 before the
  walltime) built from the site's launcher facts; ``submitit``'s own ``_make_sbatch_string``
  renders its batch script.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from types import SimpleNamespace
from typing import Any

from euroflow.errors import EuroflowError
from euroflow.sites.profiles import limits

# seconds between the pre-timeout signal and the walltime: a distributed checkpoint must fit
DEFAULT_SIGNAL_DELAY_S = 600


class _Resources(dict):
    """Snakemake's job resources as the plugin reads them (attribute access and .get)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PluginJob:
    """The parts of a Snakemake job the Slurm plugin reads to build its sbatch line."""

    def __init__(self, rule: str, resources: dict[str, Any], threads: int):
        self.name = rule
        self.resources = _Resources(resources)
        self.threads = threads

    def is_group(self) -> bool:
        return False


def account(site: dict, environ: dict[str, str] | None = None) -> str:
    """The project account from the site's variable; a missing or malformed one is an error."""
    environ = os.environ if environ is None else environ
    spec = site["account"]
    value = environ.get(spec["variable"], "")
    if not value:
        raise EuroflowError(
            f"{site['name']}: ${spec['variable']} is not set; export {spec['variable']}=<your project account>"
            f" (e.g. {spec.get('example', '...')})"
        )
    if not re.fullmatch(spec["pattern"], value):
        raise EuroflowError(
            f"{site['name']}: ${spec['variable']}={value!r} does not look like a {site['name']} account "
            f"(pattern {spec['pattern']}, e.g. {spec.get('example', '...')})"
        )
    return value


def sbatch_line(job: PluginJob, profile: dict, *, account_name: str | None, workdir: str) -> str:
    """The plugin's sbatch command for ``job`` (without the ``--wrap`` of the Snakemake job step)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    wildcards = "_".join(f"{k}={v}" for k, v in sorted(job.resources.get("_wildcards", {}).items()))
    resources = {k: v for k, v in job.resources.items() if not k.startswith("_")}
    job = PluginJob(job.name, resources, job.threads)
    params = {
        "run_uuid": "<run-uuid>",
        "slurm_logfile": f".snakemake/slurm_logs/rule_{job.name}/{wildcards}/%j.log".replace("//", "/"),
        "comment_str": f"rule_{job.name}" + (f"_wildcards_{wildcards}" if wildcards else ""),
        "account": f" -A {shlex.quote(account_name)}" if account_name else "",
        "partition": f" -p {shlex.quote(str(resources['slurm_partition']))}" if resources.get("slurm_partition") else "",
        "workdir": workdir,
    }
    settings = SimpleNamespace(
        requeue=bool(profile.get("slurm-requeue")),
        no_requeue=bool(profile.get("slurm-no-requeue")),
        qos=profile.get("slurm-qos"),
        reservation=profile.get("slurm-reservation"),
    )
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def training_parameters(
    site: dict,
    resources: dict[str, Any],
    *,
    account_name: str | None,
    job_name: str,
    signal_delay_s: int = DEFAULT_SIGNAL_DELAY_S,
) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters of a pretraining job on ``site``.

    ``resources`` are the pretrain rule's (``slurm_partition``, ``qos``, ``nodes``, ``runtime``
    in minutes) as the site's profile sets them; the rest (tasks and cores per node, CPU
    binding, modules, environment) are the site's launcher facts.
    """
    defaults = site.get("defaults", {})
    partition = resources.get("slurm_partition") or defaults.get("gpu_partition")
    if partition not in site.get("partitions", {}):
        raise EuroflowError(f"{site['name']}: pretrain partition {partition!r} is not a partition of the site")
    qos = resources.get("qos") or (defaults.get("gpu_qos") if partition == defaults.get("gpu_partition") else None)
    node = site["nodes"][site["partitions"][partition]["node"]]
    launcher = site["launcher"]
    gpus = node.get("gpus", 0)
    tasks = launcher.get("tasks_per_node", gpus or 1)
    nodes = int(resources.get("nodes") or 1)
    minutes = int(resources.get("runtime") or 60)
    max_hours, max_nodes = limits(site, partition, qos)
    if minutes > max_hours * 60:
        raise EuroflowError(f"{site['name']}: pretrain runtime {minutes} min exceeds the {max_hours:g} h limit of {partition}{f' (QOS {qos})' if qos else ''}")
    if max_nodes and nodes > max_nodes:
        raise EuroflowError(f"{site['name']}: pretrain nodes {nodes} exceed the {max_nodes} allowed in {partition}{f' (QOS {qos})' if qos else ''}")
    setup = [f"module load {module}" for module in site.get("modules", [])]
    setup += [f"export {key}={_shell_value(value)}" for key, value in launcher.get("env", {}).items()]
    params: dict[str, Any] = {
        "job_name": job_name,
        "partition": partition,
        "time": minutes,
        "nodes": nodes,
        "ntasks_per_node": tasks,
        "cpus_per_task": launcher.get("cpus_per_task", 1),
        "signal_delay_s": min(signal_delay_s, max(10, minutes * 60 // 4)),
        "setup": setup,
        "stderr_to_stdout": True,
    }
    if gpus:
        params["gpus_per_node"] = gpus
        params["exclusive"] = True
    if qos:
        params["qos"] = qos
    if account_name:
        params["account"] = account_name
    if launcher.get("cpu_bind"):
        params["srun_args"] = [f"--cpu-bind={launcher['cpu_bind']}"]
    return params


def _shell_value(value: str) -> str:
    """Quote for the batch script, keeping ``${VAR}`` references for the job's shell to expand."""
    text = str(value)
    return f'"{text}"' if "$" in text else shlex.quote(text)


def python_command(site: dict, account_name: str | None) -> str | None:
    """How the job starts Python: inside the site's container when it has one, else None (this Python)."""
    container = site.get("container", {})
    if container.get("runtime") in (None, "none"):
        return None
    fill = {"account": account_name or "${SBATCH_ACCOUNT}", "user": "${USER}"}
    binds = ",".join(b.format(**fill) for b in container.get("bind", []))
    image = container["image"].format(**fill)
    return f"{container['runtime']} exec {f'--bind {binds} ' if binds else ''}{image} python"


def training_script(params: dict[str, Any], folder: str | os.PathLike, python: str | None) -> str:
    """The batch script submitit submits for ``params`` (as ``SlurmExecutor`` writes it)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([python or shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=str(folder), map_count=None, **params)
