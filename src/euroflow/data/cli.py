"""``euroflow data``: shards, filtering, deduplication, sampling weights, tokenization, blend. Every input and output is explicit."""

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


def _bundle(args: argparse.Namespace) -> int:
    from euroflow.atomic import write_text
    from euroflow.bundle import manifest

    for name in args.files:
        if not Path(name).is_file():
            raise EuroflowError(f"{name}: not a file of the data bundle {args.data_root} (paths.data_root)")
    record = manifest(args.data_root, args.files)
    write_text(args.out, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(record['files'])} files of {', '.join(record['datasets']) or 'no dataset'} from {args.data_root}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.prepare import prepare_shard

    data = config.load(args.config)["data"]
    report = prepare_shard(args.input, args.lang, args.out, args.signatures, args.lengths, args.report, data,
                           contamination_index=args.contamination_index)
    for warning in report["warnings"]:
        print(f"euroflow: warning: {warning}", file=sys.stderr)
    removed = ", ".join(f"{k} {v}" for k, v in report["removed"].items() if v)
    found = report["contamination"]
    if found["checked"]:
        by_set = ", ".join(f"{name} {n}" for name, n in found["by_set"].items()) or "none"
        print(f"{args.out}: {args.lang}: {found['docs']} documents share a {found['ngram']}-gram with evaluation sets "
              f"({by_set}); {'removed' if found['action'] == 'remove' else 'kept, flagged'}")
    print(
        f"{args.out}: {args.lang}: {report['docs_out']}/{report['docs_in']} documents kept"
        f" (removed: {removed or 'none'}; bad lines: {report['bad_lines']})"
    )
    return 0


def _contamination_index(args: argparse.Namespace) -> int:
    from euroflow.data.contamination import build_index, evaluation_texts, write_index

    texts = evaluation_texts(args.data_root, args.lang, [t for t in args.tasks if t])  # Snakemake quotes [] as ''
    hashes, masks, summary = build_index(texts, args.ngram)
    write_index(args.out, hashes, masks, {"ngram": args.ngram, "lang": args.lang, "sets": summary})
    shown = "; ".join(f"{name}: {s['texts']} texts ({s['unchecked']} shorter than {args.ngram} words), {s['ngrams']:,} n-grams"
                      for name, s in summary.items())
    print(f"{args.out}: {args.lang}: {shown}")
    return 0


def _dedup(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.statistics import deduplicate_language
    from euroflow.paths import RunPaths

    cfg = config.load(args.config)
    lang_dir = RunPaths(cfg).filtered_dir(args.lang)
    stats = deduplicate_language(args.reports, args.lang, args.out, args.stats, cfg["data"], lang_dir=lang_dir,
                                 pairs=args.pairs)
    d = stats["dedup"]
    print(
        f"{args.stats}: {args.lang}: {stats['docs_out']}/{stats['docs_in']} documents kept; duplicates: "
        f"exact {d['exact_duplicates']} ({d['exact_fraction']:.2%}), near {d['near_duplicates']} ({d['near_fraction']:.2%})"
    )
    return 0


def _dedup_band(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.minhash import band_pairs
    from euroflow.data.prepare import filter_params
    from euroflow.paths import RunPaths

    cfg = config.load(args.config)
    if args.lang not in cfg["languages"]:
        raise EuroflowError(f"{args.config}: languages: no {args.lang!r} to deduplicate")
    near = filter_params(cfg["data"])["near_dedup"]
    # found through the run's shard listing, like the merge's: hundreds of paths do not fit one shell command
    signatures = RunPaths(cfg).filtered_all(args.lang, "sig.npz")
    report = band_pairs(signatures, args.bands, args.out, threshold=near["threshold"], num_perm=near["num_perm"],
                        weights=tuple(near["lsh_weights"]), **({"range_docs": args.range_docs} if args.range_docs else {}))
    for band in report["bands"]:
        print(f"{args.out}: {args.lang} band {band} of 0..{report['of_bands']}: {report['pairs'][band]:,} duplicate pairs "
              f"of {report['candidates'][band]:,} candidates")
    print(f"{args.out}: {report['docs']:,} documents in {report['shards']} shards, {report['ranges']} key ranges, "
          f"{report['seconds']} s")
    return 0


def _weights(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.sampling import write_weights

    cfg = config.load(args.config)
    weights = write_weights(args.stats, cfg["sampling"], args.out, langs=cfg["languages"])
    shown = ", ".join(f"{e['lang']} {e['weight']:.3f}" for e in weights["languages"])
    print(f"{args.out}: {weights['policy']}: {shown}")
    return 0


def _blend(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.data.sampling import write_blend
    from euroflow.paths import RunPaths

    cfg = config.load(args.config)
    blend = write_blend(args.weights, RunPaths(cfg).merged_reports(), args.out_dir, config.training_tokens(cfg),
                        require_valid=cfg["data"]["require_valid"])
    for warning in blend["warnings"]:
        print(f"euroflow: warning: {warning}", file=sys.stderr)
    sizes = {split: len(blend["megatron_blend_per_split"][split]) // 2 for split in ("train", "valid")}
    print(f"{args.out_dir}/blend.json: {blend['policy']}: {sizes['train']} train and {sizes['valid']} valid datasets")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from euroflow import config
    from euroflow.atomic import write_text
    from euroflow.data.merge import merge_language
    from euroflow.jsonfile import read_json
    from euroflow.paths import SPLITS, RunPaths

    cfg = config.load(args.config)
    paths = RunPaths(cfg)
    if args.lang not in cfg["languages"]:
        raise EuroflowError(f"{args.config}: languages: no {args.lang!r} to merge")
    # found through the run's shard listing, like the blend's: hundreds of paths do not fit one shell command
    shard_ids = paths.shard_ids(args.lang)
    report_paths = [paths.tokenized_report(args.lang, shard) for shard in shard_ids]
    reports = [read_json(p, "tokenized shard report") for p in report_paths]
    # the datasets where the run's layout puts them now, not where the reports say they were written
    where = [{split: paths.tokenized_prefix(args.lang, shard, split) for split in SPLITS} for shard in shard_ids]
    merged = merge_language(args.lang, reports, {"train": args.train_prefix, "valid": args.valid_prefix},
                            report_paths, where)
    write_text(args.report, json.dumps(merged, indent=2) + "\n")
    print(f"{args.report}: {merged['shards']} shards of {args.lang}: {merged['tokens']['train']:,} train and "
          f"{merged['tokens']['valid']:,} valid tokens")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from euroflow import languages
    from euroflow.data.manifest import write_manifest

    count = write_manifest(args.shards, languages.resolve(args.languages), args.out, args.pattern)
    print(f"{args.out}: {count} shards")
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from euroflow.data.tokenize import tokenize_shard

    if len(args.input) != len(args.out_prefix):
        raise EuroflowError(
            f"tokenize: {len(args.input)} --input shards but {len(args.out_prefix)} --out-prefix; give one prefix per shard"
        )
    if args.valid_prefix and len(args.valid_prefix) != len(args.input):
        raise EuroflowError(
            f"tokenize: {len(args.input)} --input shards but {len(args.valid_prefix)} --valid-prefix; give one per shard"
        )
    assignment = None
    if args.assignment:
        import numpy as np

        if len(args.input) != 1:
            raise EuroflowError("tokenize: --assignment goes with exactly one --input shard")
        if args.assignment.endswith(".npz"):  # a language's assignment file: this shard's part of it
            from euroflow.data.dedup import read_assignment

            if not args.shard_id:
                raise EuroflowError(f"tokenize: {args.assignment} holds every shard of a language; pass --shard-id")
            assignment = read_assignment(args.assignment, args.shard_id)
        else:
            try:
                assignment = np.load(args.assignment, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise EuroflowError(f"{args.assignment}: cannot read the dedup assignment (.npy): {exc}") from None
    results = []
    for i, (shard, prefix) in enumerate(zip(args.input, args.out_prefix)):
        prefixes = {"train": prefix, **({"valid": args.valid_prefix[i]} if args.valid_prefix else {})}
        result = tokenize_shard(shard, args.tokenizer, prefixes, assignment=assignment, threads=args.threads)
        results.append(result)
        for split, split_prefix in result["prefixes"].items():
            print(f"{split_prefix}.bin: {result['docs'][split]} documents, {result['tokens'][split]:,} tokens")
        print(
            f"{shard}: {result['dropped']} documents dropped; {result['tokens']['total']:,} tokens "
            f"({result['tokens_per_s']:,.0f} tokens/s, {result['backend']})"
        )
    if args.report:
        from euroflow.atomic import write_text

        write_text(args.report, json.dumps(results[0] if len(results) == 1 else results, indent=2) + "\n")
    return 0


def _check_shard(args: argparse.Namespace) -> int:
    from euroflow.data.hplt import count_documents

    from euroflow.data.readers import empty_shard_warning

    for path in args.input:
        documents = count_documents(path)
        warning = empty_shard_warning(path, documents)
        if warning:
            print(f"euroflow: warning: {warning}", file=sys.stderr)
        print(f"{path}: {documents} documents")
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

    p = sub.add_parser("bundle", help="the files a run reads from the shared data bundle -> one manifest (dataset, licence, sha256)")
    p.add_argument("--data-root", required=True, help="the shared data bundle")
    p.add_argument("--out", required=True, help="bundle.json")
    p.add_argument("files", nargs="*", help="the bundle's files the run reads")
    p.set_defaults(func=_bundle)

    p = sub.add_parser("merge", help="one language's per-shard indexed datasets -> one per split (no re-tokenizing)")
    p.add_argument("--config", required=True, help="run config (its shard listing names the shards' reports)")
    p.add_argument("--lang", required=True, help="the language key")
    p.add_argument("--train-prefix", required=True, help="output prefix of the train split (.bin/.idx)")
    p.add_argument("--valid-prefix", required=True, help="output prefix of the valid split (.bin/.idx)")
    p.add_argument("--report", required=True, help="the language's report (.json), the blend's input")
    p.set_defaults(func=_merge)

    p = sub.add_parser("prepare", help="filter, normalize and sign one crawl shard (.jsonl.zst, .jsonl or .parquet)")
    p.add_argument("--config", required=True, help="run config (its data section: filters, dedup, bad-line limit)")
    p.add_argument("--lang", required=True, help="the shard's language key, e.g. de, sr-Latn")
    p.add_argument("--input", required=True, help="crawl shard")
    p.add_argument("--out", required=True, help="kept documents (.jsonl.zst)")
    p.add_argument("--signatures", required=True, help="deduplication signatures (.npz)")
    p.add_argument("--lengths", required=True, help="characters and bytes of each kept document (.npy)")
    p.add_argument("--report", required=True, help="counts of every filter, bad lines (JSON)")
    p.add_argument("--contamination-index", help="the language's evaluation n-grams (contamination-index); without it, not checked")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("contamination-index", help="the word n-grams of the evaluation sets a run uses in one language -> .npz")
    p.add_argument("--data-root", required=True, help="the shared data bundle")
    p.add_argument("--lang", required=True)
    p.add_argument("--tasks", nargs="*", default=[], help="the run's multiple-choice tasks (evaluation.multiple_choice)")
    p.add_argument("--ngram", type=int, required=True, help="n of the word n-grams (data.decontamination.ngram)")
    p.add_argument("--out", required=True, help="index (.npz)")
    p.set_defaults(func=_contamination_index)

    p = sub.add_parser("dedup", help="exact + MinHash near-duplicates across one language's prepared shards")
    p.add_argument("--config", required=True, help="run config (data.dedup, near_dedup, valid_fraction)")
    p.add_argument("--lang", required=True)
    p.add_argument("--reports", nargs="+", required=True, help="the shards' reports, in manifest order")
    p.add_argument("--pairs", nargs="+", help="the band jobs' pair files (dedup-band); default: the bands run here")
    p.add_argument("--out", required=True, help="assignment file (.npz): train/valid/duplicate per document")
    p.add_argument("--stats", required=True, help="the language's statistics (JSON)")
    p.set_defaults(func=_dedup)

    p = sub.add_parser("dedup-band", help="duplicate pairs of some bands across one language's shards (band 0: exact keys)")
    p.add_argument("--config", required=True, help="run config (its shard listing, data.near_dedup)")
    p.add_argument("--lang", required=True)
    p.add_argument("--bands", type=int, nargs="+", required=True, help="0: exact keys; 1..b: the MinHash LSH bands")
    p.add_argument("--out", required=True, help="pair file (.npz, one array per band)")
    p.add_argument("--range-docs", type=int,
                   help="documents sorted at once, which sets the job's memory (about 60 bytes each; default 1,048,576); results do not depend on it")
    p.set_defaults(func=_dedup_band)

    p = sub.add_parser("weights", help="sampling weights per language -> weights.json, weights.md")
    p.add_argument("--config", required=True, help="run config (languages, sampling)")
    p.add_argument("--stats", nargs="+", required=True, help="statistics JSON of each language (from dedup)")
    p.add_argument("--out", required=True, help="weights.json (weights.md is written beside it)")
    p.set_defaults(func=_weights)

    p = sub.add_parser("blend", help="Megatron blend per split over every tokenized shard -> blend.json, blend.md, per_split_data_args.json")
    p.add_argument("--config", required=True, help="run config (its shard manifest, training budget)")
    p.add_argument("--weights", required=True, help="weights.json")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_blend)

    p = sub.add_parser("manifest", help="list a directory of HPLT-style shards once into a shard manifest")
    p.add_argument("--shards", required=True, help="directory holding <hplt code>/<shards>")
    p.add_argument("--languages", nargs="+", default=["all"], help="language keys (default: all)")
    p.add_argument("--pattern", default="*.jsonl.zst", help="shard files under each language directory")
    p.add_argument("--out", required=True, help="manifest (.tsv)")
    p.set_defaults(func=_manifest)

    p = sub.add_parser("tokenize", help="shard(s) -> Megatron indexed dataset(s) <prefix>.bin/.idx per split")
    p.add_argument("--input", nargs="+", required=True, help="shard(s) (.jsonl.zst)")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory")
    p.add_argument("--out-prefix", nargs="+", required=True, help="train output prefix per input, e.g. results/x/tokenized/de/0001.train")
    p.add_argument("--valid-prefix", nargs="+", help="valid output prefix per input (documents the assignment puts in valid)")
    p.add_argument("--assignment", help="dedup assignment: .npy (int8, one code per document: 0 train, 1 valid, 2+ dropped) or a language's .npz with --shard-id; one input only")
    p.add_argument("--shard-id", help="with an .npz --assignment (a language's): the shard's id in it")
    p.add_argument("--threads", type=int, help="encoding threads (default: all cores)")
    p.add_argument("--report", help="optional JSON with counts and throughput (one object; a list for several inputs)")
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
