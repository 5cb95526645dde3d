"""``euroflow quantize``: GGUF export, llama.cpp's K-quants with an importance matrix, torch int8
variant, and the quality table. Explicit paths."""

from __future__ import annotations

import argparse

from euroflow.errors import EuroflowError


def build_parser() -> argparse.ArgumentParser:
    from euroflow.evaluate.cli import add_scoring_options
    from euroflow.quantize.gguf_export import QTYPES
    from euroflow.quantize.kquant import KQUANT_FTYPES

    parser = argparse.ArgumentParser(prog="euroflow quantize", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gguf = sub.add_parser("gguf", help="Hugging Face Llama directory -> GGUF for llama.cpp")
    gguf.add_argument("--model", required=True, help="Hugging Face Llama directory (with tokenizer.model)")
    gguf.add_argument("--type", required=True, choices=QTYPES)
    gguf.add_argument("--name", default=None, help="general.name in the GGUF (default: the model directory name)")
    gguf.add_argument("--out", required=True, help="output .gguf")
    gguf.add_argument("--summary", default=None, help="optional JSON with hparams and tensor types")

    imatrix = sub.add_parser("imatrix", help="importance matrix (as llama-imatrix) over training data of each language")
    imatrix.add_argument("--model", required=True, help="the Hugging Face directory the F16 GGUF was written from")
    imatrix.add_argument("--data", nargs="+", required=True, metavar="LANG=PREFIX",
                         help="each language's training data: a Megatron dataset prefix (PREFIX.bin, PREFIX.idx)")
    imatrix.add_argument("--tokens-per-language", type=int, required=True)
    imatrix.add_argument("--chunk-size", type=int, default=None, help="tokens per forward pass (default: the model's context)")
    imatrix.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    imatrix.add_argument("--out", required=True, help="output .imatrix.gguf")

    kquant = sub.add_parser("kquant", help="F16 GGUF -> a K-quant through llama.cpp's quantizer")
    kquant.add_argument("--source", required=True, help="the F16 GGUF")
    kquant.add_argument("--type", required=True, choices=KQUANT_FTYPES)
    kquant.add_argument("--imatrix", default=None, help="importance matrix from `euroflow quantize imatrix`")
    kquant.add_argument("--threads", type=int, default=None, help="quantizer threads (default: all cores)")
    kquant.add_argument("--out", required=True, help="output .gguf")
    kquant.add_argument("--summary", default=None, help="optional JSON with the tensor types")

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
    quality.add_argument("--out-png", default=None, help="size against quality per language (the frontier)")
    gates = sub.add_parser("gates", help="hold every variant and language of the quality table against its gate")
    gates.add_argument("--quality", required=True, help="quality.json of `euroflow quantize quality`")
    gates.add_argument("--gate", action="append", default=[], metavar="VARIANT=BPB,KL",
                       help="a variant's limits: relative bpb increase and KL divergence (nats per token), '-' for not held; "
                            "e.g. Q4_K_M=0.06,0.05 or int8=0.01,-")
    gates.add_argument("--out-json", required=True)
    gates.add_argument("--out-md", required=True)
    return parser


def parse_gate(text: str) -> tuple[str, dict]:
    name, sep, limits = text.partition("=")
    values = limits.split(",")
    try:
        if not sep or not name or len(values) != 2:
            raise ValueError
        bpb, kl = (None if v.strip() == "-" else float(v) for v in values)
        if (bpb is not None and bpb < 0) or (kl is not None and kl < 0):
            raise ValueError
    except ValueError:
        raise EuroflowError(f"--gate {text!r}: expected VARIANT=BPB,KL with limits >= 0 or '-' (e.g. Q4_K_M=0.06,0.05)") from None
    return name, {"max_bpb_increase": bpb, "max_kl": kl}


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
    elif args.command == "imatrix":
        from euroflow.quantize.kquant import compute_imatrix

        datasets = {}
        for item in args.data:
            lang, sep, prefix = item.partition("=")
            if not sep or not lang or not prefix:
                raise EuroflowError(f"--data {item!r}: expected LANG=PREFIX")
            datasets[lang] = prefix
        summary = compute_imatrix(args.model, datasets, args.out, tokens_per_language=args.tokens_per_language,
                                  chunk_size=args.chunk_size, device=args.device)
        print(f"{args.out}: {summary['entries']} tensors, {summary['chunks']} chunks of {summary['chunk_size']} tokens, "
              + ", ".join(f"{lang} {n}" for lang, n in summary["tokens"].items()) + " tokens")
    elif args.command == "kquant":
        from euroflow.quantize.gguf_export import write_summary
        from euroflow.quantize.kquant import quantize

        summary = quantize(args.source, args.out, args.type, imatrix=args.imatrix, threads=args.threads or 0)
        if args.summary:
            write_summary(summary, args.summary)
        used = f", importance matrix of {', '.join(summary['imatrix']['languages'])}" if summary["imatrix"] else ", no importance matrix"
        print(f"{args.out}: {args.type}, {summary['file_size']} bytes{used}")
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
        if args.out_png:
            from euroflow.quantize.quality import frontier_plot

            frontier_plot(table, args.out_png)
        print(markdown(table))
    elif args.command == "gates":
        import sys

        from euroflow.jsonfile import read_json
        from euroflow.quantize.quality import check_gates, gates_markdown, write_gates

        result = check_gates(read_json(args.quality, "quantization quality table"), dict(parse_gate(g) for g in args.gate))
        if result["failed"]:
            print(gates_markdown(result, only_failed=True), file=sys.stderr)
            worst = "; ".join(f"{r['variant']} {r['language']} {r['verdict'].removeprefix('FAIL: ')}" for r in result["failed"][:5])
            more = f" and {len(result['failed']) - 5} more" if len(result["failed"]) > 5 else ""
            raise EuroflowError(f"quantization gates failed for {len(result['failed'])} of {len(result['rows'])} variant-language pairs "
                                f"({worst}{more}): the table is above; ship without those variants, or set quantization.gates.<variant> "
                                "in the run config if the loss is acceptable")
        write_gates(result, args.out_json, args.out_md)
        print(gates_markdown(result))
    return 0


if __name__ == "__main__":
    import sys

    from euroflow.cli import main as euroflow_main

    sys.exit(euroflow_main(["quantize", *sys.argv[1:]]))
