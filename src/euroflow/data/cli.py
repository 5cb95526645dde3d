"""``euroflow data``: shards, cleaning, sampling blend, tokenization. Every input and output is explicit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from euroflow.errors import EuroflowError, exit_status


def _data_root(args: argparse.Namespace) -> Path:
    from euroflow import config

    if args.data_root:
        return Path(args.data_root)
    if args.config:
        return config.data_root(config.load(args.config))
    raise EuroflowError("no data root: pass --data-root or --config (paths.data_root; EUROFLOW_DATA overrides it)")


def _ntrex_shard(args: argparse.Namespace) -> int:
    from euroflow.data.ntrex import build_ntrex_shard

    summary = build_ntrex_shard(_data_root(args), args.lang, args.out)
    print(f"{args.out}: {summary['docs']} documents, {summary['chars']:,} characters ({args.lang}, NTREX-128)")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.clean import clean_shards

    params = {"min_chars": 200, "max_chars": 1_000_000, "keep_filter_values": ["keep"], "dedup": "exact"}
    if args.config:
        data = config.load(args.config)["data"]
        params = {key: data[key] for key in params}
    for key in params:
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    stats = clean_shards(args.input, args.out, args.stats, lang=args.lang, **params)
    removed = ", ".join(f"{k} {v}" for k, v in stats["removed"].items())
    print(f"{args.out}: {stats['lang']}: {stats['docs_out']}/{stats['docs_in']} documents kept (removed: {removed})")
    return 0


def _blend(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.sampling import write_blend

    cfg = config.load(args.config)
    blend = write_blend(args.stats, cfg["sampling"], args.prefix_dir, args.out_dir, langs=cfg["languages"])
    weights = ", ".join(f"{e['lang']} {e['weight']:.3f}" for e in blend["languages"])
    print(f"{args.out_dir}/blend.json: {blend['policy']}: {weights}")
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from euroflow.data.tokenize import tokenize_shard

    if len(args.input) != len(args.out_prefix):
        raise EuroflowError(
            f"tokenize: {len(args.input)} --input shards but {len(args.out_prefix)} --out-prefix; give one prefix per shard"
        )
    results = []
    for shard, prefix in zip(args.input, args.out_prefix):
        result = tokenize_shard(shard, args.tokenizer, prefix, threads=args.threads)
        results.append(result)
        print(
            f"{prefix}.bin: {result['docs']} documents, {result['tokens']:,} tokens "
            f"({result['tokens_per_s']:,.0f} tokens/s)"
        )
    if args.report:
        from euroflow.atomic import atomic_path

        with atomic_path(args.report) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _check_shard(args: argparse.Namespace) -> int:
    from euroflow.data.hplt import count_documents

    for path in args.input:
        print(f"{path}: {count_documents(path)} documents")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ntrex-shard", help="build one HPLT v2 style .jsonl.zst shard from NTREX-128")
    p.add_argument("--data-root", help="the multilingual data bundle (default: from --config)")
    p.add_argument("--config", help="run config (for paths.data_root; EUROFLOW_DATA overrides it)")
    p.add_argument("--lang", required=True, help="language key, e.g. de, sr-Latn")
    p.add_argument("--out", required=True, help="output shard (.jsonl.zst)")
    p.set_defaults(func=_ntrex_shard)

    p = sub.add_parser("clean", help="NFC, HPLT filter, length filter, exact dedup: shards of one language -> one clean shard")
    p.add_argument("--input", nargs="+", required=True, help="input shards (.jsonl.zst) of one language")
    p.add_argument("--out", required=True, help="clean shard (.jsonl.zst)")
    p.add_argument("--stats", required=True, help="statistics JSON")
    p.add_argument("--config", help="run config: data.min_chars, max_chars, keep_filter_values, dedup")
    p.add_argument("--lang", help="language key (default: from the documents' HPLT 'lang' field)")
    p.add_argument("--min-chars", dest="min_chars", type=int)
    p.add_argument("--max-chars", dest="max_chars", type=int)
    p.add_argument("--keep-filter", dest="keep_filter_values", nargs="+", help="HPLT 'filter' values to keep")
    p.add_argument("--dedup", choices=["exact", "none"])
    p.set_defaults(func=_clean)

    p = sub.add_parser("blend", help="sampling weights per language -> blend.json, blend.md, data_args.txt")
    p.add_argument("--config", required=True, help="run config (languages, sampling)")
    p.add_argument("--stats", nargs="+", required=True, help="statistics JSON of each language (from clean)")
    p.add_argument("--prefix-dir", required=True, help="directory of the indexed datasets; prefix = <dir>/<lang>")
    p.add_argument("--out-dir", required=True, help="where blend.json, blend.md, data_args.txt go")
    p.set_defaults(func=_blend)

    p = sub.add_parser("tokenize", help="clean shard(s) -> Megatron indexed dataset(s) <prefix>.bin/.idx")
    p.add_argument("--input", nargs="+", required=True, help="clean shard(s)")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory")
    p.add_argument("--out-prefix", nargs="+", required=True, help="output prefix per input, e.g. results/x/indexed/de")
    p.add_argument("--threads", type=int, help="SentencePiece encoding threads (default: all cores)")
    p.add_argument("--report", help="optional JSON with counts and throughput")
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("check-shard", help="read shard(s) completely, reporting the first bad line")
    p.add_argument("--input", nargs="+", required=True)
    p.set_defaults(func=_check_shard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: args.func(args))


if __name__ == "__main__":
    from euroflow.cli import main as euroflow_main

    sys.exit(euroflow_main(["data", *sys.argv[1:]]))
