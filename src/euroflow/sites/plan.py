"""``euroflow plan``: nodes, hours, GPU-hours and chained Slurm jobs for a run's token budget on a site.

Compute: the token budget is ``train_steps x global_batch_size x seq_length``. Training FLOPs per
token follow PaLM (Chowdhery et al. 2022, appendix B): ``6*N + 12*l*h*s``, with N the parameters
that take part in matrix multiplications (all but the input embedding: the output layer counts,
tied or not), l layers, h the hidden size and s the sequence length; the second term is the
attention scores and their product with the values, over the full s x s matrix as euroflow's
unfused attention computes it. Throughput per GPU is ``MFU x peak / FLOPs per token`` with the
site's dense bf16 peak (``nodes.<type>.peak_bf16_tflops``) and an assumed MFU (default 0.40),
unless finished pretrain jobs of the same model on the same site are in the provenance database:
then the median of their logged tokens/s divided by their GPUs. Hours scale linearly with the
GPUs (no communication or pipeline-bubble losses beyond what the MFU or the measurement holds).

Slurm: the site's default GPU partition and QOS (another QOS of that partition when the nodes
exceed the default's ``max_nodes``). One job runs at most ``max_hours``, of which
``MARGIN_HOURS`` go to start-up (container, dataset indices, loading the checkpoint) and to the
checkpoint saved when Slurm signals the time limit; a longer run is a chain of
``ceil(wall hours / (max_hours - MARGIN_HOURS))`` jobs, each resuming from the last checkpoint.

Nodes, unless given: what the site's Snakemake profile submits (``set-resources.pretrain``: nodes,
partition, QOS and the walltime of each job, which decides the chain of jobs); for a site without
one, the fewest whose run finishes in one job; when none does (``max_nodes``, or the batch: the
data-parallel size must divide the micro batches of a step), the most allowed.

Memory: :mod:`euroflow.sites.memory` under the configured TP/PP; a layout that does not fit is
reported with the layouts that do (at the configured micro batch size, else the largest smaller
one that has any), and the command exits with status 1 after printing the plan.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euroflow.config import layout_problem
from euroflow.errors import EuroflowError
from euroflow.model_size import padded_vocab_size, parameter_count
from euroflow.sites import memory

DEFAULT_MFU = 0.40
MARGIN_HOURS = 0.5
GFLOP = 1e9


@dataclass(frozen=True)
class Measured:
    """Training throughput read from recorded runs: the median over their train-log steps."""

    tokens_per_s_per_gpu: float
    runs: tuple[str, ...]
    steps: int


def flops_per_token(model: dict, vocab_size: int, tp: int = 1) -> float:
    """``6*N + 12*l*h*s`` (PaLM, appendix B); N: parameters in matrix multiplications."""
    counts = parameter_count(model, vocab_size, tp)
    n = counts["non_embedding"] + padded_vocab_size(vocab_size, tp) * model["hidden_size"]
    return 6 * n + 12 * model["num_layers"] * model["hidden_size"] * model["seq_length"]


def gpu_partition(site: dict) -> tuple[str, dict, str, dict]:
    """(partition name, partition, node type name, node) of the site's default GPU partition."""
    pname = site.get("defaults", {}).get("gpu_partition")
    if pname is None:
        raise EuroflowError(f"site {site['name']!r}: defaults.gpu_partition: none, so no GPU nodes to plan on")
    partition = site["partitions"][pname]
    node = site["nodes"][partition["node"]]
    if not node.get("gpus"):
        raise EuroflowError(f"site {site['name']!r}: nodes.{partition['node']}.gpus: the GPU partition {pname} has no GPUs")
    return pname, partition, partition["node"], node


def _allocation(site: dict, pname: str, partition: dict, nodes: int) -> dict[str, Any]:
    """The QOS a job of ``nodes`` nodes runs under, with its time and node limits."""
    options = [
        {"qos": name, "max_hours": limit["max_hours"], "max_nodes": limit.get("max_nodes", partition.get("max_nodes"))}
        for name, limit in partition.get("qos", {}).items()
    ] or [{"qos": None, "max_hours": partition["max_hours"], "max_nodes": partition.get("max_nodes")}]
    allowed = [o for o in options if o["max_nodes"] is None or nodes <= o["max_nodes"]]
    if not allowed:
        largest = max(o["max_nodes"] for o in options)
        raise EuroflowError(f"--nodes: {nodes} exceeds partitions.{pname}.max_nodes ({largest}) on {site['name']}")
    default = [o for o in allowed if o["qos"] == site.get("defaults", {}).get("gpu_qos")]
    chosen = default[0] if default else max(allowed, key=lambda o: o["max_hours"])
    if chosen["max_hours"] <= MARGIN_HOURS:
        where = f"partitions.{pname}" + (f".qos.{chosen['qos']}" if chosen["qos"] else "")
        raise EuroflowError(f"{where}.max_hours: {chosen['max_hours']} h leaves nothing after the {MARGIN_HOURS} h per-job margin")
    return {"partition": pname} | chosen


def layout_on(training: dict, nodes: int, gpus: int) -> str | None:
    """Why ``nodes`` nodes of ``gpus`` GPUs cannot run the configured parallelism (the check the
    trainer makes at start-up, :func:`euroflow.config.layout_problem`); None if they can."""
    return layout_problem(training, nodes * gpus, f"{nodes} nodes x {gpus} GPUs")


def _schedule(tokens: int, tokens_per_s_per_gpu: float, nodes: int, gpus: int, max_hours: float) -> dict[str, Any]:
    wall = tokens / (tokens_per_s_per_gpu * nodes * gpus) / 3600
    return {
        "wall": wall,
        "gpu": wall * nodes * gpus,
        "node": wall * nodes,
        "jobs": math.ceil(wall / (max_hours - MARGIN_HOURS)),
    }


def _default_nodes(site, pname, partition, gpus, training, tokens, rate) -> int:
    tp, pp = training["tensor_model_parallel_size"], training["pipeline_model_parallel_size"]
    micro_batches = training["global_batch_size"] // training["micro_batch_size"]
    chosen = None
    for n in range(1, micro_batches * tp * pp // gpus + 1):
        if layout_on(training, n, gpus):
            continue
        try:
            hours = _allocation(site, pname, partition, n)["max_hours"]
        except EuroflowError:  # more nodes than any QOS allows
            break
        chosen = n
        if _schedule(tokens, rate, n, gpus, hours)["jobs"] == 1:
            break
    if chosen is None:
        raise EuroflowError(
            f"training.global_batch_size: no node count of {site['name']} ({gpus} GPUs each) gives a data-parallel "
            f"size that divides the {micro_batches} micro batches of a step with TP x PP = {tp * pp}"
        )
    return chosen


def memory_settings(training: dict) -> dict[str, Any]:
    """The run's training settings that change memory per GPU besides the layout, as the memory model takes them."""
    return {key: training[key] for key in ("distributed_optimizer", "recompute", "attention", "sequence_parallel")}


def _fitting(config: dict, node: dict, nodes: int, micro_batch_size: int) -> list[dict[str, Any]]:
    model, training = config["model"], config["training"]
    options = memory.suggest_parallelism(
        model, config["tokenizer"]["vocab_size"], node["gpus"], node["gpu_memory_gb"], nodes,
        micro_batch_size, model["seq_length"], training["precision"], training["global_batch_size"],
        **memory_settings(training),
    )
    return [
        {"tp": tp, "pp": pp, "dp": nodes * node["gpus"] // (tp * pp), "gib_per_gpu": round(e.gib(), 1)}
        for tp, pp, e in options
    ]


def memory_fit(config: dict, node: dict, nodes: int) -> dict[str, Any]:
    """Memory per GPU under the configured TP/PP on ``nodes`` nodes of type ``node``, and the
    layouts that fit: at the configured micro batch size, else the largest smaller one that has any."""
    model, training = config["model"], config["training"]
    tp, pp, mbs = training["tensor_model_parallel_size"], training["pipeline_model_parallel_size"], training["micro_batch_size"]
    dp = nodes * node["gpus"] // (tp * pp)
    estimate = memory.estimate(
        model, config["tokenizer"]["vocab_size"], tp=tp, pp=pp, dp=dp, micro_batch_size=mbs,
        seq_length=model["seq_length"], precision=training["precision"], **memory_settings(training),
    )
    fitting = {"micro_batch_size": mbs, "layouts": _fitting(config, node, nodes, mbs)}
    if not fitting["layouts"]:
        for smaller in sorted((m for m in range(1, mbs) if mbs % m == 0), reverse=True):
            found = _fitting(config, node, nodes, smaller)
            if found:
                fitting = {"micro_batch_size": smaller, "layouts": found}
                break
    return {
        "estimate": estimate,
        "memory": {
            "tp": tp,
            "pp": pp,
            "dp": dp,
            "micro_batch_size": mbs,
            "gib": estimate.as_gib(),
            "usable_gib": round(memory.USABLE_FRACTION * node["gpu_memory_gb"], 1),
            "fits": memory.fits(estimate, node["gpu_memory_gb"]),
        },
        "fitting": fitting,
    }


def _profile_allocation(site: dict, profile: dict) -> tuple[str, dict, str, dict, dict]:
    """The pretraining job as the site's profile submits it: partition, QOS, walltime per job."""
    from euroflow.sites.profiles import limits

    resources, source = profile["resources"], profile["path"]
    pname = resources.get("slurm_partition") or site.get("defaults", {}).get("gpu_partition")
    if pname not in site["partitions"]:
        raise EuroflowError(f"{source}: set-resources.pretrain.slurm_partition: {pname!r} is not a partition of {site['name']}")
    partition = site["partitions"][pname]
    node = site["nodes"][partition["node"]]
    if not node.get("gpus"):
        raise EuroflowError(f"{source}: set-resources.pretrain.slurm_partition: {pname} has no GPUs")
    defaults = site.get("defaults", {})
    # as the launcher submits it (submission.training_parameters)
    qos = resources.get("qos") or (defaults.get("gpu_qos") if pname == defaults.get("gpu_partition") else None)
    max_hours, max_nodes = limits(site, pname, qos)
    runtime = resources.get("runtime")
    hours = min(max_hours, float(runtime) / 60) if runtime else max_hours
    if hours <= MARGIN_HOURS:
        raise EuroflowError(f"{source}: set-resources.pretrain.runtime: {runtime} min leaves nothing after the {MARGIN_HOURS} h per-job margin")
    allocation = {"partition": pname, "qos": qos, "max_hours": hours, "max_nodes": max_nodes, "source": source}
    return pname, partition, partition["node"], node, allocation


def plan(config: dict, site: dict, *, nodes: int | None = None, throughput: Measured | None = None, mfu: float = DEFAULT_MFU,
         profile: dict | None = None) -> dict:
    """The plan of a validated run config on validated site facts (see the module docstring).

    ``profile`` (``{"path", "resources"}``: the pretrain rule's resources as the site's Snakemake
    profile sets them) makes the plan the one that will be submitted: its nodes (unless ``nodes``
    is given), partition, QOS and walltime per job, which decides the chain of jobs."""
    if not 0 < mfu <= 1:
        raise EuroflowError(f"--mfu: {mfu} is not in (0, 1]")
    model, training = config["model"], config["training"]
    vocab = config["tokenizer"]["vocab_size"]
    tp = training["tensor_model_parallel_size"]
    gbs = training["global_batch_size"]
    if profile is not None:
        pname, partition, node_name, node, profile_allocation = _profile_allocation(site, profile)
    else:
        pname, partition, node_name, node = gpu_partition(site)
        profile_allocation = None
    gpus, peak = node["gpus"], node.get("peak_bf16_tflops")

    tokens = training["train_steps"] * gbs * model["seq_length"]
    flops = flops_per_token(model, vocab, tp)
    notes = []
    if throughput is not None:
        rate = throughput.tokens_per_s_per_gpu
        runs = ", ".join(throughput.runs)
        source = {
            "kind": "measured",
            "runs": list(throughput.runs),
            "steps": throughput.steps,
            "mfu": rate * flops / (peak * 1e12) if peak else None,
            "description": f"measured: run{'s' if len(throughput.runs) > 1 else ''} {runs}, {rate:,.0f} tokens/s/GPU",
        }
    else:
        if peak is None:
            raise EuroflowError(
                f"site {site['name']!r}: nodes.{node_name}.peak_bf16_tflops: not given, so no assumed MFU can be "
                "turned into tokens/s (give it, or --db with finished pretrain runs on this site)"
            )
        rate = mfu * peak * 1e12 / flops
        source = {"kind": "assumed", "mfu": mfu, "description": f"assumed MFU {mfu:.2f}"}
    if training["precision"] != "bf16":
        notes.append(f"training.precision is {training['precision']}: the peak and MFU are bf16's; expect slower")

    by_default = nodes is None
    if by_default and profile_allocation is not None:
        nodes = int(profile["resources"].get("nodes") or 1)
    elif by_default:
        nodes = _default_nodes(site, pname, partition, gpus, training, tokens, rate)
    elif nodes < 1:
        raise EuroflowError(f"--nodes: {nodes} is not a positive number of nodes")
    if profile_allocation is not None:
        allocation = profile_allocation
        if allocation["max_nodes"] and nodes > allocation["max_nodes"]:
            raise EuroflowError(f"--nodes: {nodes} exceeds the {allocation['max_nodes']} nodes of partition {pname} on {site['name']}")
    else:
        allocation = _allocation(site, pname, partition, nodes)
    problem = layout_on(training, nodes, gpus)
    if problem:
        where = "--nodes" if not by_default else f"{profile['path']}: set-resources.pretrain.nodes" if profile else "nodes"
        raise EuroflowError(f"{where}: {problem}")
    hours = _schedule(tokens, rate, nodes, gpus, allocation["max_hours"])
    if not by_default:
        nodes_reason = "--nodes"
    elif profile_allocation is not None:
        nodes_reason = f"{profile['path']}: set-resources.pretrain.nodes"
    elif hours["jobs"] == 1:
        nodes_reason = "default: the fewest that finish in one job"
    else:
        nodes_reason = "default: the most allowed, as no count finishes in one job"
    billing = node.get("billing")
    if billing:
        billed = hours["node"] * billing["per_node_hour"]
        hours["billed"] = {"unit": billing["unit"], "amount": billed, "per_node_hour": billing["per_node_hour"],
                           "note": billing.get("note")}

    fit = memory_fit(config, node, nodes)

    counts = parameter_count(model, vocab, tp)
    return {
        "run": config["run"]["name"],
        "site": site["name"],
        "model": {
            "parameters": counts["total"],
            "layers": model["num_layers"],
            "hidden_size": model["hidden_size"],
            "vocab_size": vocab,
            "flops_per_token": flops,
            "flops_formula": "6*N + 12*layers*hidden*seq (PaLM), N = parameters in matrix multiplications",
        },
        "tokens": {
            "budget": tokens,
            "train_steps": training["train_steps"],
            "global_batch_size": gbs,
            "seq_length": model["seq_length"],
        },
        "gpu": {
            "name": node["gpu"],
            "node_type": node_name,
            "per_node": gpus,
            "memory_gb": node["gpu_memory_gb"],
            "peak_bf16_tflops": peak,
        },
        "throughput": source | {"tokens_per_s_per_gpu": rate},
        "nodes": nodes,
        "nodes_reason": nodes_reason,
        "gpus": nodes * gpus,
        "hours": {k: hours[k] for k in ("wall", "gpu", "node", "billed") if k in hours},
        "slurm": allocation | {"margin_hours": MARGIN_HOURS, "jobs": hours["jobs"]},
        "memory": fit["memory"],
        "fitting": fit["fitting"],
        "notes": notes,
    }


_PRETRAIN_LOGS = """
SELECT r.id AS run_id, r.config_json, a.path,
       coalesce((SELECT l.root FROM run_locations l WHERE l.run_id = r.id ORDER BY l.id DESC LIMIT 1), r.root) AS root,
       (SELECT max(s.gpus) FROM slurm_jobs s WHERE s.job_id = j.id) AS gpus,
       (SELECT group_concat(DISTINCT s.partition) FROM slurm_jobs s WHERE s.job_id = j.id) AS partitions
FROM runs r
JOIN jobs j ON j.run_id = r.id
JOIN generated g ON g.job_id = j.id
JOIN artifacts a ON a.id = g.artifact_id
WHERE r.site = ? AND j.rule = 'pretrain' AND j.status = 'success' AND a.category = 'training_log'
ORDER BY r.started_at, j.id
"""


def _tokens_per_s(line: str) -> float | None:
    try:
        return json.loads(line).get("tokens_per_s")
    except (json.JSONDecodeError, AttributeError):  # a line cut short by a killed job, or not an entry
        return None


def measured_throughput(db_path: str | Path, site: dict, config: dict) -> Measured | None:
    """tokens/s per GPU of finished ``pretrain`` jobs of runs on ``site`` (on its GPU partition,
    where Slurm recorded one) whose config has the same ``model`` section: the median over the
    lines of their train logs of ``tokens_per_s`` (the whole job's) divided by the job's GPUs
    (``slurm_jobs.gpus``, else the run's ``training.nproc``). None when there is none."""
    from euroflow.provenance.locations import on_disk
    from euroflow.provenance.lookup import connect

    pname = gpu_partition(site)[0]
    connection = connect(db_path)
    try:
        rows = connection.execute(_PRETRAIN_LOGS, (site["name"],)).fetchall()
    finally:
        connection.close()
    rates: list[float] = []
    runs: list[str] = []
    seen: set[str] = set()
    for row in rows:
        run_config = json.loads(row["config_json"]) if row["config_json"] else {}
        if run_config.get("model") != config["model"] or row["path"] in seen:
            continue
        if row["partitions"] and pname not in row["partitions"].split(","):
            continue
        seen.add(row["path"])
        gpus = row["gpus"] or run_config.get("training", {}).get("nproc") or 1
        try:
            lines = Path(on_disk(row["path"], row["root"])).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        found = [rate / gpus for rate in map(_tokens_per_s, lines) if rate]
        if found:
            rates.extend(found)
            runs.append(row["run_id"])
    if not rates:
        return None
    return Measured(statistics.median(rates), tuple(dict.fromkeys(runs)), len(rates))


def pretrain_profile(site: dict, profiles_dir: str | Path) -> dict | None:
    """The pretrain job's resources as ``profiles/<site>`` sets them (None when the site has no
    Slurm profile there): what the workflow will submit."""
    from euroflow.sites import profiles

    path = profiles.profile_path(site["name"], profiles_dir)
    if site.get("scheduler") != "slurm" or not path.is_file():
        return None
    profile = profiles.load(site["name"], profiles_dir)
    resources = profiles.rule_resources(profile, "pretrain")
    return {"path": os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path), "resources": resources}


def _layouts(layouts: list[dict[str, Any]]) -> str:
    return ", ".join(f"TP={o['tp']} PP={o['pp']} ({o['gib_per_gpu']} GiB)" for o in layouts) or "none"


def _rows(result: dict) -> list[tuple[str, str]]:
    model, tokens, gpu, throughput = result["model"], result["tokens"], result["gpu"], result["throughput"]
    hours, slurm, mem, fitting = result["hours"], result["slurm"], result["memory"], result["fitting"]
    qos = f", QOS {slurm['qos']}" if slurm["qos"] else ""
    nodes_limit = f", {slurm['max_nodes']} nodes" if slurm["max_nodes"] else ""
    peak = f"{gpu['peak_bf16_tflops']:g} TFLOP/s bf16 peak, " if gpu["peak_bf16_tflops"] else ""
    rate = f"{throughput['description']}: {throughput['tokens_per_s_per_gpu']:,.0f} tokens/s per GPU"
    if throughput["kind"] == "measured" and throughput["mfu"]:
        rate += f" (MFU {throughput['mfu']:.2f})"
    shape = f"{model['layers']} layers, hidden {model['hidden_size']}, vocabulary {model['vocab_size']:,}"
    steps = f"{tokens['train_steps']:,} steps x {tokens['global_batch_size']} x {tokens['seq_length']}"
    margin = f"{slurm['max_hours']:g} h - {slurm['margin_hours']:g} h for start-up and the checkpoint at the time limit"
    if slurm.get("source"):
        walltime = f"{slurm['max_hours']:g} h per job from {slurm['source']}{nodes_limit}"
    else:
        walltime = f"max {slurm['max_hours']:g} h{nodes_limit}"
    billed = hours.get("billed")
    layout = f"TP={mem['tp']} PP={mem['pp']} DP={mem['dp']}, micro batch {mem['micro_batch_size']}"
    verdict = "fits" if mem["fits"] else "does NOT fit"
    fit = _layouts(fitting["layouts"])
    if fitting["micro_batch_size"] != mem["micro_batch_size"]:
        fit = f"at micro_batch_size {fitting['micro_batch_size']}: {fit}"
    rows = [
        ("model", f"{model['parameters'] / 1e9:.2f} B parameters ({shape})"),
        ("token budget", f"{tokens['budget'] / 1e9:.2f} B tokens ({steps})"),
        ("FLOPs per token", f"{model['flops_per_token'] / GFLOP:.2f} GFLOP ({model['flops_formula']})"),
        ("GPU", f"{gpu['name']}: {peak}{gpu['memory_gb']} GB, {gpu['per_node']} per node"),
        ("throughput", rate),
        ("nodes", f"{result['nodes']} ({result['gpus']} GPUs; {result['nodes_reason']})"),
        ("wall time", f"{hours['wall']:,.1f} h"),
        ("GPU-hours", f"{hours['gpu']:,.0f} (one GPU = one {gpu['name']} for an hour)"),
        ("node-hours", f"{hours['node']:,.0f}"),
        *([("billed", f"{billed['amount']:,.0f} {billed['unit']}s ({billed['per_node_hour']:g} per node-hour"
                      + (f"; {billed['note']}" if billed.get("note") else "") + ")")] if billed else []),
        ("partition", f"{slurm['partition']}{qos} ({walltime})"),
        ("Slurm jobs", f"{slurm['jobs']} = ceil({hours['wall']:,.1f} h / ({margin}))"),
        ("memory per GPU", f"{mem['gib']['total']:.1f} GiB with {layout}: {verdict} ({mem['usable_gib']} GiB usable)"),
        ("layouts that fit", fit),
    ]
    return rows + [("note", note) for note in result["notes"]]


def _does_not_fit(result: dict) -> str:
    mem, fitting = result["memory"], result["fitting"]
    if fitting["layouts"]:
        smaller = fitting["micro_batch_size"] != mem["micro_batch_size"]
        at = f" with training.micro_batch_size {fitting['micro_batch_size']}" if smaller else ""
        advice = f"layouts that fit on {result['nodes']} nodes{at}: {_layouts(fitting['layouts'])}"
    else:
        advice = "no TP x PP layout fits on this many nodes even with micro batch 1"
    return (
        f"training.tensor_model_parallel_size/pipeline_model_parallel_size: TP={mem['tp']} PP={mem['pp']} needs "
        f"{mem['gib']['total']:.1f} GiB per GPU at micro batch {mem['micro_batch_size']}, over the {mem['usable_gib']} GiB "
        f"usable of a {result['gpu']['name']} on {result['site']}; {advice}"
    )


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from euroflow import config as run_config
    from euroflow import sites
    from euroflow.paths import RunPaths

    parser = argparse.ArgumentParser(prog="euroflow plan", description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True, help="sites/<name>.yaml")
    parser.add_argument("--config", required=True, help="the run config")
    parser.add_argument("--nodes", type=int, default=None,
                        help="nodes per job (default: the site profile's, else the fewest that finish in one job)")
    parser.add_argument("--directory", default=None, help="the euroflow checkout whose profiles/ and sites/ to use (default: this one)")
    parser.add_argument("--db", default=None, help="provenance database with measured runs (default: the config's, if it exists)")
    parser.add_argument("--mfu", type=float, default=DEFAULT_MFU, help=f"assumed model FLOPs utilization (default {DEFAULT_MFU})")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)

    from euroflow import checkout

    found = checkout.find(args.directory)
    config = run_config.load(args.config, found.config_schema)
    site = sites.load(args.site, found.sites)
    profile = pretrain_profile(site, found.profiles)
    if profile is None:
        gpu_partition(site)
    db = args.db or RunPaths(config).provenance_db
    throughput = measured_throughput(db, site, config) if args.db or Path(db).is_file() else None
    result = plan(config, site, nodes=args.nodes, throughput=throughput, mfu=args.mfu, profile=profile)
    if Path.cwd().resolve() != found.root:
        result["notes"].append(f"profiles and site files of the checkout {found.root}")

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        table = Table(title=f"euroflow plan: {result['run']} on {result['site']}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for label, value in _rows(result):
            table.add_row(label, value)
        Console().print(table)
    if not result["memory"]["fits"]:
        raise EuroflowError(_does_not_fit(result))
    return 0
