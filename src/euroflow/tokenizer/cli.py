"""``euroflow tokenizer``: train the SentencePiece BPE tokenizer; fertility/parity report on FLORES."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from euroflow.errors import EuroflowError, exit_status


def _shard_languages(specs: list[str]) -> dict[str, list[Path]]:
    """``LANG=PATH`` or ``PATH`` (language from the first document's HPLT ``lang`` field); several per language."""
    from euroflow import languages
    from euroflow.data.hplt import read_shard

    shards: dict[str, list[Path]] = {}
    for spec in specs:
        if spec.split("=", 1)[0] in languages.LANGUAGES and "=" in spec:
            lang, path = spec.split("=", 1)
        else:
            path = spec
            first = next(iter(read_shard(path)), None)
            codes = first.get("lang") if first else None
            code = codes[0] if isinstance(codes, list) and codes else codes
            if not isinstance(code, str):
                raise EuroflowError(f"{path}: cannot tell the language (no documents or no 'lang'); pass it as LANG={path}")
            try:
                lang = languages.by_hplt_code(code).key
            except EuroflowError as exc:
                raise EuroflowError(f"{path}: field 'lang': {exc}") from None
        if Path(path) in shards.get(lang, []):
            raise EuroflowError(f"{path}: given twice for language {lang}")
        shards.setdefault(lang, []).append(Path(path))
    return shards


def _train(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.tokenizer.train import train_tokenizer

    cfg = config.load(args.config)
    if args.shards:
        shards = _shard_languages(args.shards)
    else:
        from euroflow.paths import RunPaths

        paths = RunPaths(cfg)
        shards = {lang: [Path(p) for p in paths.tokenizer_shards(lang)] for lang in cfg["languages"]}
    summary = train_tokenizer(cfg, shards, args.blend, args.out)
    print(
        f"{args.out}: vocab {summary['vocab_size']}, trained on {summary['sample_chars']:,} characters "
        f"of {len(summary['languages'])} languages in {summary['training_seconds']:.1f} s"
    )
    return 0


def _parity(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.tokenizer.parity import write_parity_report

    if args.data_root:
        root = Path(args.data_root)
    elif args.config:
        root = config.data_root(config.load(args.config))
    else:
        raise EuroflowError("no data root: pass --data-root or --config (paths.data_root; EUROFLOW_DATA overrides it)")
    langs = "all" if args.languages == ["all"] else args.languages
    from euroflow import languages

    report = write_parity_report(
        args.tokenizer, root, languages.resolve(langs), args.out_json, args.out_md, splits=args.splits
    )
    worst = max(report["languages"].items(), key=lambda item: item[1]["parity"])
    print(f"{args.out_json}: {len(report['languages'])} languages; highest parity {worst[0]} {worst[1]['parity']:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow tokenizer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the tokenizer on clean shards, weighted like the blend")
    p.add_argument("--config", required=True, help="run config (tokenizer section, run.seed, paths.data_root)")
    p.add_argument("--shards", nargs="+",
                   help="prepared shards: PATH or LANG=PATH (several per language allowed); default: the run's own, "
                        "tokenizer.shards_per_language of each language")
    p.add_argument("--blend", required=True, help="blend.json (per-language weights)")
    p.add_argument("--out", required=True, help="tokenizer directory to create")
    p.set_defaults(func=_train)

    p = sub.add_parser("parity", help="fertility and parity on FLORES train+dev")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory")
    p.add_argument("--data-root", help="the multilingual data bundle (default: from --config)")
    p.add_argument("--config", help="run config (for paths.data_root)")
    p.add_argument("--languages", nargs="+", required=True, help="language keys, or 'all'")
    p.add_argument("--splits", nargs="+", default=["train", "dev"], help="FLORES splits (default: train dev)")
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=_parity)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: args.func(args))


if __name__ == "__main__":
    from euroflow.cli import main as euroflow_main

    sys.exit(euroflow_main(["tokenizer", *sys.argv[1:]]))
