"""``euroflow site``: the facts of a site and how a run would be submitted there."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from euroflow import sites


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow site", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the known sites")
    check = sub.add_parser("check", help="per rule, the sbatch line and environment a run would use; fails on what the site would reject")
    check.add_argument("name", help="site name (sites/<name>.yaml)")
    check.add_argument("--config", required=True, help="the run config you will submit, e.g. workflow/configs/eu-1b.yaml")
    check.add_argument("--directory", default=None, help="the euroflow checkout to check (default: the working directory)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name in sites.names():
            site = sites.load(name)
            print(f"{name:14} {site['description']}")
        return 0
    from euroflow.sites.check import check, render

    result = check(args.name, args.config, directory=args.directory)
    if args.json:
        print(json.dumps(asdict(result) | {"verdict": result.verdict}, indent=1, default=str))
    else:
        print(render(result), end="")
    for problem in result.problems:
        print(f"euroflow: error: {problem}", file=sys.stderr)
    print(result.verdict, file=sys.stderr if result.problems else sys.stdout)
    return 1 if result.problems else 0
