"""The ``euroflow`` command: thin; each room has its own ``cli.main``."""

from __future__ import annotations

import importlib
import json
import sys

from euroflow.errors import exit_status

ROOMS = {
    "data": "euroflow.data.cli",
    "tokenizer": "euroflow.tokenizer.cli",
    "train": "euroflow.train.cli",
    "evaluate": "euroflow.evaluate.cli",
    "quantize": "euroflow.quantize.cli",
    "prov": "euroflow.provenance.cli",
    "site": "euroflow.sites.cli",
    "plan": "euroflow.sites.plan",
}

USAGE = """usage: euroflow COMMAND ...

commands:
  config check PATH     validate a run config (prints the resolved config with --print)
  languages             list the language registry
  results --config PATH where a run's artifacts are, and its headline figures
  data ...              data preparation: shards, cleaning, sampling, tokenization
  tokenizer ...         tokenizer training and fertility/parity report
  train ...             Megatron-Core pretraining and Hugging Face export
  evaluate ...          bits-per-byte and multiple-choice evaluation
  quantize ...          GGUF and int8 variants, quality table
  prov ...              the provenance store: runs, jobs, artifacts
  site check NAME       how each rule would be submitted on a site, and what would go wrong
  plan --site S --config RUN   nodes, hours, GPU-hours and chained jobs for a run's token budget
"""


def _config(argv: list[str]) -> int:
    from euroflow import config

    if len(argv) < 2 or argv[0] != "check":
        print("usage: euroflow config check PATH [--print]", file=sys.stderr)
        return 2
    resolved = config.load(argv[1])
    if "--print" in argv:
        print(json.dumps(resolved, indent=2))
    else:
        print(f"{argv[1]}: valid ({len(resolved['languages'])} languages, hash {config.config_hash(resolved)[:12]})")
    return 0


def _languages(argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from euroflow.languages import LANGUAGES

    table = Table("key", "language", "HPLT", "FLORES-200", "group")
    for lang in LANGUAGES.values():
        table.add_row(lang.key, lang.name, lang.hplt, lang.flores, lang.group)
    Console().print(table)
    return 0


def _results(argv: list[str]) -> int:
    import argparse

    from euroflow import config, results

    parser = argparse.ArgumentParser(prog="euroflow results")
    parser.add_argument("--config", required=True, help="the run config the workflow ran with")
    return results.show(config.load(parser.parse_args(argv).config))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {"config": _config, "languages": _languages, "results": _results}
    if command in commands:
        return exit_status(lambda: commands[command](rest))
    if command in ROOMS:
        return exit_status(lambda: importlib.import_module(ROOMS[command]).main(rest))
    print(f"euroflow: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
