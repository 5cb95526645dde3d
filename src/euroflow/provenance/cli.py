"""``euroflow prov``: look at recorded runs, jobs and artifacts.

    runs [--site S] [--status S] [--since DATE] [--until DATE] [--db PATH] [--json]   one line per run
    show RUN_ID [--db PATH] [--json]  a run, its config and packages, jobs and artifacts
    jobs RUN_ID [--db PATH] [--json]  the jobs of a run (one line per attempt)
    lineage PATH|SHA256 [--root DIR] [--db PATH] [--json]  the tree from an artifact back to its sources
    verify RUN_ID [--root DIR] [--db PATH] [--json]  recompute checksums (under a moved tree); exit 1 if anything changed
    relocate RUN_ID --root DIR [--note TEXT]  record where a run's results tree is now, once it verifies there
    diff RUN_A RUN_B [--db PATH] [--json]  config keys, code, package versions and checksums that differ
    export RUN_ID --format prov-json|ro-crate -o PATH [--license L]   W3C PROV-JSON or a Provenance Run Crate
    report RUN_ID -o PATH.html        one self-contained HTML page: DAG, jobs, timings, plots
    card RUN_ID -o DIR                training summary (card.md + card.json): data, compute, evaluation
    contamination RUN_ID [--json]     per language and evaluation set: training documents sharing an n-gram with it
    ingest [PATH ...]                 replay job sidecars (*.prov.json) into the database, idempotently

RUN_ID may be an unambiguous prefix of the id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from euroflow.errors import exit_status
from euroflow.provenance.vocabulary import RUN_STATUSES

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

# rich, SQLAlchemy and Alembic are imported where used: `prov runs --json` and `prov lineage
# --json` answer without them (interpreter start-up counts against their 200 ms goal)

# the provenance_db default of workflow/schemas/config.schema.yaml
DEFAULT_DB = "results/provenance.sqlite"


def _row(table: Table, *cells: object) -> None:
    """Add cells as plain text: paths and messages may contain rich markup characters."""
    from rich.text import Text

    table.add_row(*(Text(str(c)) for c in cells))


def _short(value: str | None, n: int = 12) -> str:
    return "-" if not value else value[:n]


def _time(value: str | None) -> str:
    return "-" if not value else value.replace("T", " ")[:19]


def _dirty(value: bool | None) -> str:
    return "?" if value is None else ("dirty" if value else "clean")


def _print_runs(console: Console, runs: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="euroflow runs")
    for col in ("run", "status", "site", "started (UTC)", "ended (UTC)", "jobs", "failed tries", "commit", "tree", "config"):
        table.add_column(col, overflow="fold")
    for r in runs:
        _row(
            table, r["id"], r["status"], r["site"] or "-", _time(r["started_at"]), _time(r["ended_at"]), str(r["jobs"]),
            str(r["failed_attempts"]), _short(r["git_commit"]), _dirty(r["git_dirty"]), _short(r["config_hash"]),
        )
    console.print(table)


def _jobs_table(jobs: list[dict], title: str) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for col in ("job", "try", "rule", "wildcards", "status", "exit", "started (UTC)", "ended (UTC)", "host", "slurm"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        wildcards = ", ".join(f"{k}={v}" for k, v in j["wildcards"].items())
        exit_status = "-" if j["exit_status"] is None else str(j["exit_status"])
        slurm = ", ".join(
            s["slurm_jobid"] + (f"+{s['restart_count']}" if s.get("restart_count") else "") + (f" {s['state']}" if s["state"] else "")
            for s in j["slurm"]
        ) or "-"
        _row(
            table, str(j["snakemake_jobid"]), str(j["attempt"]), j["rule"], wildcards, j["status"], exit_status,
            _time(j["started_at"]), _time(j["ended_at"]), j["host"] or "-", slurm,
        )
    return table


def _print_show(console: Console, d: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    for key in ("id", "status", "started_at", "ended_at", "site", "profile", "workdir", "written_root", "root", "snakefile", "command", "host",
                "user", "git_commit", "git_dirty", "git_diff_sha256", "config_path", "config_hash", "snakemake_config_md5", "error"):
        value = d.get(key)
        _row(head, key, "-" if value is None else str(value))
    for name, version in d["packages"].items():
        _row(head, f"package {name}", version or "(not installed)")
    for env in d["environments"]:
        build = f"torch {env['torch'] or '-'}" + (f", CUDA {env['cuda']}" if env["cuda"] else "") + (
            f", ROCm {env['rocm']}" if env["rocm"] else ""
        )
        _row(head, "environment", f"{build}; {len(env['packages'])} packages; GPUs: {', '.join(env['gpus']) or 'none'}")
        _row(head, "container", (env["container_image"] or "-") + (f" ({env['container_digest']})" if env["container_digest"] else ""))
        _row(head, "modules", " ".join(env["loaded_modules"]) or "-")
    console.print(head)
    console.print(_jobs_table(d["jobs"], "jobs"))
    for j in d["jobs"]:
        if j["error"]:
            console.print(f"[bold red]job {j['snakemake_jobid']} ({escape(j['rule'])}) error:[/] {escape(j['error'])}")
    artifacts = Table(title="artifacts")
    for col in ("path", "category", "size", "sha256", "generated by", "used by"):
        artifacts.add_column(col, overflow="fold")
    producers: dict[int, list[str]] = {}
    consumers: dict[int, list[str]] = {}
    for j in d["jobs"]:
        label = f"{j['rule']}#{j['snakemake_jobid']}"
        for e in j["generated"]:
            producers.setdefault(e["artifact_id"], []).append(label)
        for e in j["used"]:
            consumers.setdefault(e["artifact_id"], []).append(label)
    for a in d["artifacts"]:
        _row(
            artifacts, a["path"], a["category"] or a["kind"], "-" if a["size"] is None else str(a["size"]), _short(a["sha256"], 16),
            ", ".join(producers.get(a["artifact_id"], [])) or "-", ", ".join(consumers.get(a["artifact_id"], [])) or "-",
        )
    console.print(artifacts)


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _lineage_tree(node: dict, tree: Tree | None = None, parent_run: str | None = None) -> Tree:
    """One line per artifact; run, commit and config are shown where they differ from the consumer's."""
    from rich.text import Text
    from rich.tree import Tree

    label = Text(_relative(node["path"]), style="bold" if tree is None else "")
    if node.get("category") and node["category"] != "other":
        label.append(f"  [{node['category']}]", style="magenta")
    label.append(f"  sha256 {_short(node['sha256'], 12)}", style="dim")
    if node.get("seen"):
        label.append("  (shown above)", style="dim")
    elif "job" in node:
        job = node["job"]
        wildcards = ",".join(f"{k}={v}" for k, v in job["wildcards"].items())
        label.append(f"  <- {job['rule']}" + (f"[{wildcards}]" if wildcards else ""), style="cyan")
        tries = job["attempts"]
        if len(tries) > 1 or any(t["slurm_jobids"] for t in tries):
            label.append(
                "  " + "; ".join(
                    f"try {t['attempt']} {t['status']}" + (f" slurm {','.join(t['slurm_jobids'])}" if t["slurm_jobids"] else "")
                    for t in tries
                ),
                style="dim",
            )
        if job["run"] != parent_run:
            dirty = "+dirty" if job["git_dirty"] else ""
            label.append(
                f"  run {job['run'][:8]} commit {_short(job['git_commit'], 12)}{dirty} config {_short(job['config_hash'], 12)}",
                style="dim",
            )
    branch = Tree(label) if tree is None else tree.add(label)
    for child in node.get("inputs", []):
        _lineage_tree(child, branch, node.get("job", {}).get("run"))
    return branch


def _print_verify(console: Console, result: dict) -> None:
    from rich.table import Table

    where = (f"results tree {result['root'] or '(not recorded)'}: {result['inside_root']} artifacts; "
             f"{result['outside_root']} outside it at their recorded paths")
    console.print(f"run {result['run']}: checked {where}")
    if result["ok"]:
        console.print(f"run {result['run']}: all {result['checked']} recorded artifacts unchanged")
        return
    table = Table("status", "path", "recorded sha256", "current sha256", title=f"run {result['run']}: changed artifacts")
    for p in result["problems"]:
        _row(table, p["status"], _relative(p["path"]), _short(p["recorded_sha256"], 16), _short(p["current_sha256"], 16))
    console.print(table)
    console.print(f"{len(result['problems'])} of {result['checked']} recorded artifacts changed or missing")


def _print_diff(console: Console, diff: dict) -> None:
    from rich.table import Table

    console.print(f"a = run {diff['a']}\nb = run {diff['b']}")
    sections = [
        ("config", diff["config"]),
        ("code", [{"key": k, **v} for k, v in diff["code"].items()]),
        ("packages", diff["packages"]),
        ("artifacts (sha256)", [{**d, "a": _short(d["a"], 16), "b": _short(d["b"], 16)} for d in diff["artifacts"]]),
    ]
    for title, rows in sections:
        if not rows:
            console.print(f"{title}: identical")
            continue
        table = Table("key", "a", "b", title=f"{title}: {len(rows)} differ")
        for row in rows:
            _row(table, row["key"], "-" if row["a"] is None else row["a"], "-" if row["b"] is None else row["b"])
        console.print(table)


def _contamination(engine, run_id: str) -> dict:
    """The decontamination counts of a run's languages, from the statistics files it recorded (as the card)."""
    from euroflow.provenance.card import training_card

    card = training_card(engine, run_id)
    return {"run": card["card"]["run_id"],
            "languages": [{"lang": lang["lang"], "contamination": lang.get("contamination")}
                          for lang in card["training_data"]["languages"]]}


def _print_contamination(console: Console, data: dict) -> None:
    from rich.table import Table

    rows = [(x["lang"], x["contamination"]) for x in data["languages"]]
    sets = sorted({name for _, c in rows if isinstance(c, dict) for name in (c.get("by_set") or {})})
    table = Table("language", "checked", "n-gram", "action", "documents", *sets,
                  title=f"run {data['run']}: training documents sharing an n-gram with an evaluation set")
    for lang, c in rows:
        if not isinstance(c, dict):
            _row(table, lang, str(c), "", "", "", *["" for _ in sets])
            continue
        by_set = c.get("by_set") or {}
        _row(table, lang, "yes" if c.get("checked") else "no", str(c.get("ngram")), str(c.get("action")),
             str(c.get("docs", 0)), *[str(by_set.get(name, 0)) for name in sets])
    console.print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow prov", description="Recorded runs, jobs and artifacts.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, with_run: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        if with_run:
            p.add_argument("run_id", metavar="RUN_ID", help="run id or an unambiguous prefix")
        p.add_argument(
            "--db", default=DEFAULT_DB, metavar="PATH", help=f"provenance SQLite database (default: {DEFAULT_DB})"
        )
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")
        return p

    runs = add("runs", "list the recorded runs", with_run=False)
    runs.add_argument("--site", help="only runs on this site")
    runs.add_argument("--status", choices=RUN_STATUSES, help="only runs that ended so")
    runs.add_argument("--since", metavar="DATE", help="only runs started on or after DATE (YYYY-MM-DD or ISO time, UTC)")
    runs.add_argument("--until", metavar="DATE", help="only runs started on or before DATE (a date includes the whole day)")
    add("show", "one run: config, packages, jobs, artifacts", with_run=True)
    add("jobs", "the jobs of one run", with_run=True)
    lineage = add("lineage", "the tree from an artifact back to its sources", with_run=False)
    lineage.add_argument("path", metavar="PATH", help="a file or directory the workflow produced (also in a moved or "
                         "copied results tree), or its sha256")
    lineage.add_argument("--root", metavar="DIR", help="the results tree PATH lies in, if it was moved (default: found)")
    verify = add("verify", "recompute the checksums of everything a run read or wrote", with_run=True)
    verify.add_argument("--root", metavar="DIR", help="where the run's results tree is now (default: its recorded location)")
    relocate = add("relocate", "record where a run's results tree is now (an archive, a copy), once it verifies there", with_run=True)
    relocate.add_argument("--root", metavar="DIR", required=True, help="the results directory as it is now")
    relocate.add_argument("--note", help="why, e.g. 'archived to tape after the scratch purge'")
    add("diff", "what differs between two runs", with_run=True).add_argument(
        "other_run_id", metavar="RUN_B", help="the run to compare with"
    )
    export = add("export", "write a run as W3C PROV-JSON or as a Workflow/Provenance Run RO-Crate", with_run=True)
    export.add_argument("--format", required=True, choices=("prov-json", "ro-crate"))
    export.add_argument("-o", "--out", required=True, metavar="PATH", help="a .json file, or the crate directory")
    export.add_argument("--license", default=None, help="licence of the crate (URL or text), ro-crate only")
    add("report", "write one self-contained HTML page about a run", with_run=True).add_argument(
        "-o", "--out", required=True, metavar="PATH", help="the .html file to write"
    )
    add("card", "write a training summary (Markdown + JSON) in the spirit of the EU AI Act", with_run=True).add_argument(
        "-o", "--out", required=True, metavar="DIR", help="directory for card.md and card.json"
    )
    add("contamination", "was evaluation text in the training data? documents per language and evaluation set",
        with_run=True)
    add("ingest", "replay job sidecars (*.prov.json) into the database; safe to repeat", with_run=False).add_argument(
        "paths", nargs="*", default=["results"], metavar="PATH", help="sidecar files or directories to search (default: results)"
    )
    return parser


def _answer_fast(args: argparse.Namespace) -> tuple[object, object]:
    """runs and lineage: plain sqlite3 (euroflow.provenance.lookup)."""
    from euroflow.provenance.lookup import connect, lineage, list_runs

    connection = connect(args.db)
    try:
        if args.command == "runs":
            data = list_runs(connection, site=args.site, status=args.status, since=args.since, until=args.until)
            return data, lambda console: _print_runs(console, data)
        data = lineage(connection, args.path, root=args.root)
        return data, lambda console: console.print(_lineage_tree(data))
    finally:
        connection.close()


def _answer(args: argparse.Namespace) -> tuple[object, object]:
    from euroflow.provenance.db import open_db
    from euroflow.provenance.queries import diff_runs, list_jobs, relocate, run_detail, verify

    engine = open_db(args.db, create=args.command == "ingest", write=args.command in ("ingest", "relocate"))
    try:
        if args.command == "show":
            data = run_detail(engine, args.run_id)
            return data, lambda console: _print_show(console, data)
        if args.command == "jobs":
            data = list_jobs(engine, args.run_id)
            return data, lambda console: console.print(_jobs_table(data, f"jobs of run {args.run_id}"))
        if args.command == "diff":
            data = diff_runs(engine, args.run_id, args.other_run_id)
            return data, lambda console: _print_diff(console, data)
        if args.command == "verify":
            data = verify(engine, args.run_id, root=args.root)
            return data, lambda console: _print_verify(console, data)
        if args.command == "relocate":
            data = relocate(engine, args.run_id, args.root, note=args.note)
            return data, lambda console: console.print(
                f"run {data['run']}: results tree recorded at {data['root']} ({data['checked']} artifacts verified there)"
            )
        if args.command == "export":
            from euroflow.provenance.export import export_prov_json, export_ro_crate

            if args.format == "prov-json":
                written = export_prov_json(engine, args.run_id, Path(args.out))
            else:
                written = export_ro_crate(engine, args.run_id, Path(args.out), license=args.license)
            return {"format": args.format, "path": str(written)}, lambda console: console.print(f"wrote {written}")
        if args.command == "report":
            from euroflow.provenance.report import write_report

            written = write_report(engine, args.run_id, Path(args.out))
            return {"path": str(written)}, lambda console: console.print(f"wrote {written}")
        if args.command == "card":
            from euroflow.provenance.card import write_card

            paths = [str(p) for p in write_card(engine, args.run_id, Path(args.out))]
            return {"paths": paths}, lambda console: console.print("wrote " + ", ".join(paths))
        if args.command == "contamination":
            data = _contamination(engine, args.run_id)
            return data, lambda console: _print_contamination(console, data)
        from euroflow.provenance.ingest import ingest

        data = ingest(engine, args.paths)
        return data, lambda console: console.print(
            f"{data['sidecars']} sidecars, {data['attempts']} job attempts: {data['jobs_created']} new, "
            f"{data['jobs_completed']} completed, {data['unchanged']} already recorded; "
            f"{data['runs_created']} runs known only from sidecars"
        )
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: _print_answer(args))


def _print_answer(args: argparse.Namespace) -> int:
    data, render = (_answer_fast if args.command in ("runs", "lineage") else _answer)(args)
    if args.json:
        # indented for a person at a terminal; compact for scripts (a lineage can be megabytes)
        # json.dumps, not json.dump: dump to a stream takes the pure-Python encoder, 20x slower
        sys.stdout.write(json.dumps(data, indent=2 if sys.stdout.isatty() else None) + "\n")
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze ids and hashes into 80 columns
            console = Console(width=200)
        render(console)
    return 1 if args.command == "verify" and not data["ok"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
