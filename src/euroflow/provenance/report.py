"""``euroflow prov report RUN``: one self-contained HTML page about a recorded run.

Everything is inline (CSS, the rule graph as SVG, plots as base64 ``data:`` URIs), so the
page opens offline and can be archived next to the run. Every recorded string (paths,
errors, commands, wildcards) goes through Jinja2's autoescaping. Times are UTC.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import Engine

from euroflow.atomic import write_text
from euroflow.provenance.queries import run_detail

# worst status wins when a rule's attempts disagree
STATUS_RANK = {"success": 0, "running": 1, "incomplete": 2, "failed": 3}
STATUS_COLORS = {  # status: (fill, stroke)
    "success": ("#e6f4ea", "#2e7d32"),
    "running": ("#e3eefa", "#1565c0"),
    "incomplete": ("#fff4d6", "#b26a00"),
    "failed": ("#fde7e9", "#c62828"),
}
UNKNOWN_COLORS = ("#eeeeee", "#616161")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Snakemake's job errors open with a line like "RuleException:"; the summary skips such lines
_BARE_EXCEPTION = re.compile(r"^[A-Za-z_.]*(Error|Exception):?$")
# rule graph geometry (px); rule names are drawn in a 12px monospace font
CHAR_W, NODE_H, GAP_X, GAP_Y, MARGIN, WAYPOINT_W = 7.3, 44, 28, 56, 16, 8


def write_report(engine: Engine, run_id: str, out: Path) -> Path:
    """Write the HTML report of run ``run_id`` (or an unambiguous prefix of it) to ``out``.

    Raises :class:`euroflow.errors.EuroflowError` for an unknown run, before anything is written;
    the file appears only once it is complete."""
    detail = run_detail(engine, run_id)
    html = render_report(detail)
    out = Path(out)
    write_text(out, html)
    return out


def render_report(detail: dict[str, Any]) -> str:
    """The report page for a :func:`euroflow.provenance.queries.run_detail` dict."""
    workdir = detail.get("workdir") or ""
    jobs = detail["jobs"]
    rules = _rule_summaries(jobs)
    graph = _layout(rules, _rule_edges(jobs))
    order = {node["name"]: (node["y"], node["x"]) for node in graph["nodes"]}
    return _TEMPLATE.render(
        run=detail,
        duration=_seconds(detail["started_at"], detail["ended_at"]),
        graph=graph,
        rules=sorted(rules.values(), key=lambda r: order[r["rule"]]),
        jobs=[_job_row(job) for job in jobs],
        plots=_plots(jobs, workdir),
        outputs=_outputs(jobs, workdir),
        config=_pretty_json(detail.get("config_json")),
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def _rule_summaries(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per rule: jobs, attempts, failed attempts, wall time (total/mean/max), max RSS, worst status."""
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_rule[job["rule"]].append(job)
    summaries = {}
    for rule, attempts in by_rule.items():
        walls = [s for s in (_seconds(j["started_at"], j["ended_at"]) for j in attempts) if s is not None]
        rss = [s["max_rss_bytes"] for j in attempts for s in j["slurm"] if s.get("max_rss_bytes") is not None]
        summaries[rule] = {
            "rule": rule,
            "jobs": len({j["snakemake_jobid"] for j in attempts}),
            "attempts": len(attempts),
            "failed": sum(j["status"] == "failed" for j in attempts),
            "status": max((j["status"] for j in attempts), key=lambda s: STATUS_RANK.get(s, 1)),
            "total_s": sum(walls) if walls else None,
            "mean_s": sum(walls) / len(walls) if walls else None,
            "max_s": max(walls, default=None),
            "max_rss": max(rss, default=None),
        }
    return summaries


def _rule_edges(jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(A, B) when a job of rule B used an artifact that a job of rule A generated as output."""
    producers: dict[int, set[str]] = defaultdict(set)
    for job in jobs:
        for edge in job["generated"]:
            if edge["role"] == "output":
                producers[edge["artifact_id"]].add(job["rule"])
    return sorted(
        {(a, job["rule"]) for job in jobs for edge in job["used"] for a in producers.get(edge["artifact_id"], ()) if a != job["rule"]}
    )


def _layout(rules: dict[str, dict[str, Any]], edges: list[tuple[str, str]]) -> dict[str, Any]:
    """A top-down layered drawing: layer = longest path from a source rule. An edge that spans
    several layers passes through an invisible waypoint in each, so it runs beside the boxes,
    not through them; within a layer, slots sit under the mean position of their predecessors."""
    names = sorted(rules)
    layer = dict.fromkeys(names, 0)
    for _ in range(len(names)):  # Bellman-Ford style; a cycle stops growing at len(names) - 1
        grown = False
        for a, b in edges:
            if layer[a] + 1 > layer[b] and layer[a] + 1 < len(names):
                layer[b], grown = layer[a] + 1, True
        if not grown:
            break
    slots: dict[Any, int] = dict(layer)  # rule name or (a, b, depth) waypoint -> layer
    preds: dict[Any, list[Any]] = defaultdict(list)
    chains = []
    for a, b in edges:
        waypoints = [(a, b, depth) for depth in range(layer[a] + 1, layer[b])]
        slots.update((w, w[2]) for w in waypoints)
        chain = [a, *waypoints, b]
        for u, v in zip(chain, chain[1:]):
            preds[v].append(u)
        chains.append(chain)
    node_w = min(280.0, max(130.0, CHAR_W * max((len(n) for n in names), default=10) + 24))
    width_of = {s: node_w if isinstance(s, str) else WAYPOINT_W for s in slots}
    rows = [[s for s in slots if slots[s] == depth] for depth in range(max(slots.values(), default=-1) + 1)]

    def row_w(row: list[Any]) -> float:
        return sum(width_of[s] for s in row) + GAP_X * max(len(row) - 1, 0)

    total_w = max((row_w(row) for row in rows), default=0)
    center: dict[Any, float] = {}
    top: dict[Any, float] = {}
    for depth, row in enumerate(rows):

        def key(slot: Any) -> tuple[float, str]:
            placed = [center[p] for p in preds[slot] if p in center]
            return (sum(placed) / len(placed) if placed else float("inf"), slot if isinstance(slot, str) else "\0".join(slot[:2]))

        row.sort(key=key)
        x = MARGIN + (total_w - row_w(row)) / 2
        for slot in row:
            center[slot], top[slot] = x + width_of[slot] / 2, MARGIN + depth * (NODE_H + GAP_Y)
            x += width_of[slot] + GAP_X
    nodes = []
    for name in names:
        r = rules[name]
        fill, stroke = STATUS_COLORS.get(r["status"], UNKNOWN_COLORS)
        max_chars = int((node_w - 16) / CHAR_W)
        jobs = f"{r['jobs']} job{'s' if r['jobs'] != 1 else ''}" + (f", {r['failed']} failed" if r["failed"] else "")
        nodes.append({
            "name": name, "label": name if len(name) <= max_chars else name[: max_chars - 1] + "…", "jobs": jobs,
            "status": r["status"], "layer": layer[name], "x": center[name] - node_w / 2, "y": top[name],
            "fill": fill, "stroke": stroke,
        })
    paths = []
    for chain in chains:
        x, y = center[chain[0]], top[chain[0]] + NODE_H
        d = f"M{x:.1f},{y:.1f}"
        for slot in chain[1:]:
            nx, ny = center[slot], top[slot] - (2 if isinstance(slot, str) else 0)
            bend = max(abs(ny - y) / 2, GAP_Y / 2)
            d += f" C{x:.1f},{y + bend:.1f} {nx:.1f},{ny - bend:.1f} {nx:.1f},{ny:.1f}"
            if not isinstance(slot, str):  # straight down through the waypoint's layer
                x, y = nx, ny + NODE_H
                d += f" L{x:.1f},{y:.1f}"
        paths.append({"d": d, "source": chain[0], "target": chain[-1]})
    return {
        "nodes": nodes, "edges": paths, "node_w": node_w, "node_h": NODE_H,
        "width": 2 * MARGIN + total_w, "height": 2 * MARGIN + len(rows) * NODE_H + max(len(rows) - 1, 0) * GAP_Y,
    }


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    wildcards = job["wildcards"] or {}
    if isinstance(wildcards, str):
        wildcards = json.loads(wildcards)
    error = (job["error"] or "").strip()
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return {
        **job,
        "wildcards_text": ", ".join(f"{k}={v}" for k, v in wildcards.items()),
        "duration": _seconds(job["started_at"], job["ended_at"]),
        "slurm_ids": ", ".join(str(s["slurm_jobid"]) for s in job["slurm"]),
        "error_first": next((line for line in lines if not _BARE_EXCEPTION.match(line)), lines[0] if lines else ""),
        "error_full": error,
    }


def _rel(path: str, workdir: str) -> str:
    """``path`` relative to the run's working directory when it lies below it."""
    root = workdir.rstrip(os.sep)
    if root and path.startswith(root + os.sep):
        return os.path.relpath(path, root)
    return path


def _plots(jobs: list[dict[str, Any]], workdir: str) -> list[dict[str, Any]]:
    """Every generated plot, read from disk now: a data URI, or a note saying why there is none."""
    latest: dict[str, dict[str, Any]] = {}
    for job in jobs:  # start order: a later attempt's record wins
        for edge in job["generated"]:
            if edge["category"] == "plot":
                latest[edge["path"]] = edge
    plots = []
    for path, edge in sorted(latest.items()):
        plot = {"path": _rel(path, workdir), "uri": None, "note": None}
        try:
            data = Path(path).read_bytes()
        except OSError:
            plot["note"] = "missing: the file is no longer on disk"
        else:
            if not data.startswith(PNG_SIGNATURE):
                plot["note"] = "not shown: the file is not a PNG image"
            else:
                plot["uri"] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                if edge["sha256"] and hashlib.sha256(data).hexdigest() != edge["sha256"]:
                    plot["note"] = "changed on disk since the run recorded it"
        plots.append(plot)
    return plots


def _outputs(jobs: list[dict[str, Any]], workdir: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """The run's outputs (role output), grouped by category."""
    found = {}
    for job in jobs:
        for edge in job["generated"]:
            if edge["role"] == "output":
                found[edge["artifact_id"]] = {**edge, "rel": _rel(edge["path"], workdir)}
    rows = sorted(found.values(), key=lambda e: (e["category"], e["rel"]))
    return [(category, list(group)) for category, group in itertools.groupby(rows, key=lambda e: e["category"])]


def _pretty_json(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _when(iso: str | None) -> str:
    return "–" if not iso else iso.replace("T", " ")[:19]


def _dash(value: Any) -> Any:
    return "–" if value is None or value == "" else value


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(duration=_duration, size=_size, when=_when, dash=_dash)
_TEMPLATE = _ENV.from_string(r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>euroflow run {{ run.id }} ({{ run.status }})</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto; padding: 1em 2em 3em; max-width: 1400px; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-bottom: .3em; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; white-space: nowrap; }
table.kv th { width: 12em; }
.status { font-weight: 600; padding: 1px 6px; border-radius: 3px; }
.status.success { background: #e6f4ea; color: #2e7d32; } .status.failed { background: #fde7e9; color: #c62828; }
.status.incomplete { background: #fff4d6; color: #b26a00; } .status.running { background: #e3eefa; color: #1565c0; }
.muted { color: #777; } .dirty { color: #c62828; font-weight: 600; }
.graph { overflow-x: auto; border: 1px solid #eee; }
figure { display: inline-block; margin: .5em; vertical-align: top; max-width: 48%; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: 12px; word-break: break-all; }
details summary { cursor: pointer; }
</style>
</head>
<body>
<h1>euroflow run <code>{{ run.id }}</code> <span class="status {{ run.status }}">{{ run.status }}</span></h1>
<p class="muted">Report generated {{ generated_at }}. All times UTC.</p>

<h2>Run</h2>
<table class="kv">
<tr><th>Started</th><td>{{ run.started_at|when }}</td></tr>
<tr><th>Ended</th><td>{{ run.ended_at|when }}</td></tr>
<tr><th>Duration</th><td>{{ duration|duration }}</td></tr>
<tr><th>User@host</th><td>{{ run.user|dash }}@{{ run.host|dash }}</td></tr>
<tr><th>Site / profile</th><td>{{ run.site|dash }} / {{ run.profile|dash }}</td></tr>
<tr><th>Git commit</th><td><code>{{ run.git_commit|dash }}</code>
{% if run.git_dirty %} <span class="dirty">dirty</span>{% if run.git_diff_sha256 %} (diff sha256 <code>{{ run.git_diff_sha256 }}</code>){% endif %}
{% elif run.git_dirty is none %} <span class="muted">(clean/dirty unknown)</span>{% else %} clean{% endif %}</td></tr>
<tr><th>Config hash</th><td><code>{{ run.config_hash|dash }}</code>{% if run.config_path %} from <code>{{ run.config_path }}</code>{% endif %}</td></tr>
<tr><th>Snakemake</th><td>{{ run.snakemake_version|dash }}</td></tr>
<tr><th>Working directory</th><td><code>{{ run.workdir|dash }}</code></td></tr>
<tr><th>Command</th><td><code>{{ run.command|dash }}</code></td></tr>
<tr><th>Jobs</th><td>{{ jobs|length }} attempts, {{ run.failed_attempts }} failed</td></tr>
{% if run.error %}<tr><th>Error</th><td><pre>{{ run.error }}</pre></td></tr>{% endif %}
</table>
{% if config %}<details><summary>Resolved configuration</summary><pre>{{ config }}</pre></details>{% endif %}

<h3>Key packages</h3>
{% if run.packages %}
<table><tr><th>package</th><th>version</th></tr>
{% for name, version in run.packages|dictsort %}<tr><td>{{ name }}</td><td><code>{{ version|dash }}</code></td></tr>
{% endfor %}</table>
{% else %}<p class="muted">none recorded</p>{% endif %}

<h3>Environment</h3>
{% for env in run.environments %}
<table class="kv">
<tr><th>Host</th><td>{{ env.host|dash }} <span class="muted">(captured {{ env.captured_at|when }})</span></td></tr>
<tr><th>Python</th><td>{{ env.python|dash }}</td></tr>
<tr><th>PyTorch</th><td>{{ env.torch|dash }}</td></tr>
<tr><th>CUDA / ROCm</th><td>{{ env.cuda|dash }} / {{ env.rocm|dash }}</td></tr>
<tr><th>Container</th><td>{% if env.container_image %}<code>{{ env.container_image }}</code>{% if env.container_digest %} @ <code>{{ env.container_digest }}</code>{% endif %}{% else %}none{% endif %}</td></tr>
<tr><th>GPUs</th><td>{% for gpu in env.gpus or [] %}{{ gpu }}{% if not loop.last %}<br>{% endif %}{% else %}none{% endfor %}</td></tr>
<tr><th>Modules</th><td>{{ (env.loaded_modules or [])|join(", ")|dash }}</td></tr>
</table>
{% if env.packages %}<details><summary>All {{ env.packages|length }} installed packages</summary><pre>
{% for name, version in env.packages|dictsort %}{{ name }}=={{ version }}
{% endfor %}</pre></details>{% endif %}
{% else %}<p class="muted">none recorded</p>{% endfor %}

<h2>Rule graph</h2>
{% if graph.nodes %}
<div class="graph">
<svg width="{{ graph.width|round(1) }}" height="{{ graph.height|round(1) }}" viewBox="0 0 {{ graph.width|round(1) }} {{ graph.height|round(1) }}" role="img" aria-label="rule graph">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>
{% for e in graph.edges %}<path d="{{ e.d }}" fill="none" stroke="#888" stroke-width="1.4" marker-end="url(#arrow)"><title>{{ e.source }} → {{ e.target }}</title></path>
{% endfor %}
{% for n in graph.nodes %}<g class="rule" data-rule="{{ n.name }}" data-layer="{{ n.layer }}" data-status="{{ n.status }}"><title>{{ n.name }}: {{ n.jobs }} ({{ n.status }})</title>
<rect x="{{ n.x|round(1) }}" y="{{ n.y|round(1) }}" width="{{ graph.node_w|round(1) }}" height="{{ graph.node_h }}" rx="6" fill="{{ n.fill }}" stroke="{{ n.stroke }}" stroke-width="1.5"/>
<text x="{{ (n.x + graph.node_w / 2)|round(1) }}" y="{{ n.y + 18 }}" text-anchor="middle" font-family="monospace" font-size="12" font-weight="bold">{{ n.label }}</text>
<text x="{{ (n.x + graph.node_w / 2)|round(1) }}" y="{{ n.y + 34 }}" text-anchor="middle" font-family="sans-serif" font-size="11" fill="#555">{{ n.jobs }}</text></g>
{% endfor %}
</svg>
</div>
<p class="muted">An arrow A &rarr; B: a job of B used an output that a job of A generated. Colour: the worst status of the rule's attempts.</p>
{% else %}<p class="muted">No jobs recorded.</p>{% endif %}

<h2>Per-rule statistics</h2>
<table>
<tr><th>rule</th><th>status</th><th>jobs</th><th>attempts</th><th>failed</th><th>total wall</th><th>mean wall</th><th>max wall</th><th>max RSS</th></tr>
{% for r in rules %}<tr><td class="mono">{{ r.rule }}</td><td><span class="status {{ r.status }}">{{ r.status }}</span></td>
<td class="num">{{ r.jobs }}</td><td class="num">{{ r.attempts }}</td><td class="num">{{ r.failed }}</td>
<td class="num">{{ r.total_s|duration }}</td><td class="num">{{ r.mean_s|duration }}</td><td class="num">{{ r.max_s|duration }}</td><td class="num">{{ r.max_rss|size }}</td></tr>
{% endfor %}</table>

<h2>Jobs</h2>
<table>
<tr><th>rule</th><th>wildcards</th><th>try</th><th>status</th><th>started</th><th>duration</th><th>host</th><th>Slurm jobs</th><th>exit</th><th>error</th></tr>
{% for j in jobs %}<tr><td class="mono">{{ j.rule }}</td><td class="mono">{{ j.wildcards_text }}</td><td class="num">{{ j.attempt }}</td>
<td><span class="status {{ j.status }}">{{ j.status }}</span></td><td class="mono">{{ j.started_at|when }}</td><td class="num">{{ j.duration|duration }}</td>
<td>{{ j.host|dash }}</td><td class="mono">{{ j.slurm_ids|dash }}</td><td class="num">{{ j.exit_status|dash }}</td>
<td>{% if j.error_full %}<details><summary>{{ j.error_first }}</summary><pre>{{ j.error_full }}</pre></details>{% endif %}</td></tr>
{% endfor %}</table>

<h2>Plots</h2>
{% for p in plots %}
<figure>{% if p.uri %}<img src="{{ p.uri }}" alt="{{ p.path }}">{% endif %}
<figcaption><code>{{ p.path }}</code>{% if p.note %} <span class="{{ 'muted' if p.uri else 'dirty' }}">({{ p.note }})</span>{% endif %}</figcaption></figure>
{% else %}<p class="muted">The run generated no plots.</p>{% endfor %}

<h2>Outputs</h2>
{% if outputs %}
<table>
<tr><th>path</th><th>category</th><th>size</th><th>sha256</th></tr>
{% for category, rows in outputs %}<tr><th colspan="4">{{ category }} ({{ rows|length }})</th></tr>
{% for a in rows %}<tr><td class="mono">{{ a.rel }}</td><td>{{ a.category }}</td><td class="num">{{ a.size|size }}</td><td class="mono">{{ (a.sha256 or "")[:16]|dash }}</td></tr>
{% endfor %}{% endfor %}</table>
{% else %}<p class="muted">The run recorded no outputs.</p>{% endif %}
</body>
</html>
""")
