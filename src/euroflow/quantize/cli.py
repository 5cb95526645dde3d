"""``euroflow quantize``: GGUF export, torch int8 variant, and the quality table. Explicit paths."""

from __future__ import annotations

import argparse

from euroflow.errors import EuroflowError


def build_parser() -> argparse.ArgumentParser:
    from euroflow.evaluate.cli import add_scoring_options
    from euroflow.quantize.gguf_export import QTYPES

    parser = argparse.ArgumentParser(prog="euroflow quantize", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gguf = sub.add_parser("gguf", help="Hugging Face Llama directory -> GGUF for llama.cpp")
    gguf.add_argument("--model", required=True, help="Hugging Face Llama directory (with tokenizer.model)")
    gguf.add_argument("--type", required=True, choices=QTYPES)
    gguf.add_argument("--name", default=None, help="general.name in the GGUF (default: the model directory name)")
    gguf.add_argument("--out", required=True, help="output .gguf")
    gguf.add_argument("--summary", default=None, help="optional JSON with hparams and tensor types")

    int8 = sub.add_parser("int8", help="torch int8 weight-only variant (torchao)")
    int8.add_argument("--model", required=True)
    int8.add_argument("--out", required=True, help="output .pt")

    quality = sub.add_parser("quality", help="bits per byte of every variant on FLORES test")
    quality.add_argument("--model", required=True, help="the unquantized Hugging Face directory")
    quality.add_argument("--gguf", nargs="*", default=[], help="GGUF files")
    quality.add_argument("--int8", default=None, help="int8 .pt file")
    quality.add_argument("--data-root", required=True)
    quality.add_argument("--languages", default="all", help="'all' or comma-separated keys")
    quality.add_argument("--max-sentences", type=int, default=None, help="first N test sentences per language")
    add_scoring_options(quality)
    quality.add_argument("--out-json", required=True)
    quality.add_argument("--out-md", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from euroflow.evaluate.cli import set_threads

    set_threads(getattr(args, "threads", None))
    if args.command == "gguf":
        from euroflow.quantize.gguf_export import export_gguf, write_summary

        summary = export_gguf(args.model, args.out, args.type, name=args.name)
        if args.summary:
            write_summary(summary, args.summary)
        print(f"{args.out}: {args.type}, {summary['file_size']} bytes, {len(summary['tensor_types'])} tensors")
    elif args.command == "int8":
        from euroflow.quantize.int8 import export_int8

        summary = export_int8(args.model, args.out)
        print(f"{args.out}: {summary['method']}, {summary['file_size']} bytes")
    elif args.command == "quality":
        from euroflow.languages import resolve
        from euroflow.quantize.quality import markdown, quality_table, write_quality

        if args.max_sentences is not None and args.max_sentences < 1:
            raise EuroflowError(f"--max-sentences={args.max_sentences}: must be >= 1")
        languages = resolve("all" if args.languages == "all" else [k.strip() for k in args.languages.split(",") if k.strip()])
        table = quality_table(
            args.model,
            args.gguf,
            args.int8,
            args.data_root,
            languages,
            max_sentences=args.max_sentences,
            batch_size=args.batch_size,
            device=args.device,
        )
        write_quality(table, args.out_json, args.out_md)
        print(markdown(table))
    return 0


if __name__ == "__main__":
    import sys

    from euroflow.cli import main as euroflow_main

    sys.exit(euroflow_main(["quantize", *sys.argv[1:]]))
