"""The quantization quality table: bits per byte of every variant on the same FLORES test sentences.

Variants: the unquantized Hugging Face model (float32), each GGUF file read back with
``gguf.GGUFReader`` and dequantized into a float32 ``LlamaForCausalLM`` (so the table measures the
weight quantization error; activations stay float32), and the torch int8 weight-only model. For
each variant and language also the KL divergence of its next-token distribution from the unquantized
model's (nats per predicted token, exact: the reference stays loaded beside each variant and both run
on the same batches, so two models' float32 weights are in memory at once), and the relative bpb increase.
:func:`check_gates` holds them against the run config's ``quantization.gates``.
"""

from __future__ import annotations

import json
from pathlib import Path

from euroflow.atomic import write_text
from euroflow.errors import EuroflowError

REFERENCE = "hf-fp32"


def hf_weights_size(model_dir: Path) -> int:
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not files:
        raise EuroflowError(f"{model_dir}: no *.safetensors or pytorch_model*.bin weight files")
    return sum(f.stat().st_size for f in files)


def _check_gguf_vocab(contents, tokenizer, path: Path) -> None:
    tokens = contents.metadata.get("tokenizer.ggml.tokens") or []
    for token_id in range(tokenizer.vocab_size):
        if tokens[token_id] != tokenizer.processor.IdToPiece(token_id):
            raise EuroflowError(
                f"{path}: token {token_id} is {tokens[token_id]!r} in the GGUF but "
                f"{tokenizer.processor.IdToPiece(token_id)!r} in {tokenizer.path}; not this model's tokenizer"
            )


def quality_table(
    model_dir: str | Path,
    gguf_files: list[str | Path],
    int8_file: str | Path | None,
    data_root: str | Path,
    languages: list[str],
    *,
    max_sentences: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> dict:
    from euroflow.evaluate.bpb import bits_per_byte, flores_sentences
    from euroflow.evaluate.model import load_model, load_tokenizer, resolve_device
    from euroflow.quantize.gguf_read import load_gguf_as_hf
    from euroflow.quantize.int8 import load_int8

    model_dir = Path(model_dir)
    tokenizer = load_tokenizer(model_dir)
    sentences = {}
    for lang in languages:
        found = flores_sentences(data_root, lang)
        sentences[lang] = found[:max_sentences] if max_sentences else found

    target = resolve_device(device)

    reference_model = load_model(model_dir, device)

    def measure(model, reference=None) -> dict[str, dict[str, float]]:
        model.to(target)
        results = {lang: bits_per_byte(model, tokenizer, sentences[lang], batch_size=batch_size, reference=reference) for lang in languages}
        return {"bpb": {lang: r["bpb"] for lang, r in results.items()},
                "kl": {lang: r.get("kl_per_token", 0.0) for lang, r in results.items()}}

    variants = [
        {
            "name": REFERENCE,
            "kind": "hf",
            "path": str(model_dir),
            "file_size": hf_weights_size(model_dir),
            **measure(reference_model),
        }
    ]
    for path in gguf_files:
        path = Path(path)
        model, contents = load_gguf_as_hf(path)
        _check_gguf_vocab(contents, tokenizer, path)
        file_type = _gguf_file_type(contents)
        variants.append(
            {
                "name": f"gguf-{file_type}",
                "kind": "gguf",
                "path": str(path),
                "file_size": path.stat().st_size,
                "tensor_types": sorted(set(contents.tensor_types.values())),
                **measure(model, reference_model),
            }
        )
    if int8_file is not None:
        int8_file = Path(int8_file)
        model, info = load_int8(int8_file)
        variants.append(
            {
                "name": "torch-int8",
                "kind": "torch-int8",
                "method": info["method"],
                "path": str(int8_file),
                "file_size": int8_file.stat().st_size,
                **measure(model, reference_model),
            }
        )

    reference = variants[0]["bpb"]
    for variant in variants:
        deltas = [variant["bpb"][lang] - reference[lang] for lang in languages]
        variant["mean_bpb"] = sum(variant["bpb"].values()) / len(languages)
        variant["mean_delta_vs_fp32"] = sum(deltas) / len(deltas)
        variant["max_abs_delta_vs_fp32"] = max(abs(d) for d in deltas)
        variant["bpb_increase"] = {lang: (variant["bpb"][lang] - reference[lang]) / reference[lang] for lang in languages}
        variant["mean_kl"] = sum(variant["kl"].values()) / len(languages)
        variant["max_kl"] = max(variant["kl"].values())
    return {
        "model": str(model_dir),
        "dataset": "FLORES-200 test",
        "languages": list(languages),
        "sentences_per_language": {lang: len(s) for lang, s in sentences.items()},
        "max_sentences": max_sentences,
        "reference": REFERENCE,
        "device": str(target),
        "variants": variants,
    }


def _gguf_file_type(contents) -> str:
    import gguf

    value = contents.metadata.get("general.file_type")
    if value is None:
        return "unknown"
    names = {
        int(gguf.LlamaFileType.ALL_F32): "F32",
        int(gguf.LlamaFileType.MOSTLY_F16): "F16",
        int(gguf.LlamaFileType.MOSTLY_Q8_0): "Q8_0",
        int(gguf.LlamaFileType.MOSTLY_Q4_0): "Q4_0",
        int(gguf.LlamaFileType.MOSTLY_Q6_K): "Q6_K",
        int(gguf.LlamaFileType.MOSTLY_Q5_K_M): "Q5_K_M",
        int(gguf.LlamaFileType.MOSTLY_Q4_K_M): "Q4_K_M",
    }
    return names.get(int(value), f"ftype{int(value)}")


def markdown(table: dict) -> str:
    """A summary row per variant, then bpb per language (rows) and variant (columns) with deltas."""
    langs, variants = table["languages"], table["variants"]
    reference = variants[0]["bpb"]
    cap = f", first {table['max_sentences']} sentences per language" if table.get("max_sentences") else ""
    lines = [
        "# Quantization quality",
        "",
        f"Bits per byte on {table['dataset']}{cap} (lower is better); delta = variant - {table['reference']}. "
        "GGUF variants are dequantized and run in float32 (weight error only).",
        "",
        "KL = KL divergence of the variant's next-token distribution from the reference's, nats per token.",
        "",
        "| variant | file size (MiB) | mean bpb | mean delta | max abs delta | mean KL | max KL |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants:
        lines.append(
            f"| {v['name']} | {v['file_size'] / 2**20:.2f} | {v['mean_bpb']:.4f} | {v['mean_delta_vs_fp32']:+.4f}"
            f" | {v['max_abs_delta_vs_fp32']:.4f} | {v['mean_kl']:.5f} | {v['max_kl']:.5f} |"
        )
    lines += ["", "| language | " + " | ".join(v["name"] for v in variants) + " |", "|---|" + "---:|" * len(variants)]
    for lang in langs:
        cells = [f"{reference[lang]:.4f}"] + [f"{v['bpb'][lang]:.4f} ({v['bpb'][lang] - reference[lang]:+.4f})" for v in variants[1:]]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_quality(table: dict, out_json: str | Path, out_md: str | Path) -> None:
    write_text(out_json, json.dumps(table, indent=2) + "\n")
    write_text(out_md, markdown(table))


def frontier_plot(table: dict, out_png: str | Path) -> None:
    """Size against quality, per language: each variant's file size and its relative bpb increase (left)
    and KL divergence (right) over the reference; one thin line per language, the mean in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from euroflow.atomic import atomic_path

    variants = sorted(table["variants"][1:], key=lambda v: v["file_size"])
    sizes = [v["file_size"] / 2**20 for v in variants]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    for ax, key, label in ((axes[0], "bpb_increase", "bits-per-byte increase over the reference (%)"),
                           (axes[1], "kl", "KL divergence from the reference (nats per token)")):
        scale = 100.0 if key == "bpb_increase" else 1.0
        for lang in table["languages"]:
            ax.plot(sizes, [v[key][lang] * scale for v in variants], color="#9aa7b8", linewidth=0.8, alpha=0.6, marker=".")
        mean = [sum(v[key].values()) / len(table["languages"]) * scale for v in variants]
        ax.plot(sizes, mean, color="#1f4e79", linewidth=2.5, marker="o", label=f"mean of {len(table['languages'])} languages")
        worst = max(table["languages"], key=lambda lang: variants[0][key][lang]) if variants else None
        if worst:
            ax.plot(sizes, [v[key][worst] * scale for v in variants], color="#b03a2e", linewidth=1.5, label=f"worst at the smallest: {worst}")
        for size, value, variant in zip(sizes, mean, variants):
            ax.annotate(variant["name"], (size, value), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("file size (MiB, log scale)")
        ax.set_ylabel(label)
        ax.legend(loc="upper right")
    fig.suptitle(f"Quantization: size against quality on {table['dataset']}, per language (lower is better)")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def gate_arguments(quantization: dict) -> list[str]:
    """``--gate=VARIANT=BPB,KL`` for each variant of the run config's ``quantization`` ('-': not held)."""
    names = list(quantization["gguf"]) + (["int8"] if quantization["torch_int8"] else [])

    def limit(value) -> str:
        return "-" if value is None else repr(float(value))

    gates = quantization["gates"]
    return [f"--gate={name}={limit(gates[name]['max_bpb_increase'])},{limit(gates[name]['max_kl'])}" for name in names]


def gate_name(variant: str) -> str:
    """The ``quantization.gates`` key of a quality-table variant: gguf-Q4_K_M -> Q4_K_M, torch-int8 -> int8."""
    return variant.removeprefix("gguf-").removeprefix("torch-")


def check_gates(table: dict, gates: dict[str, dict]) -> dict:
    """Every (variant, language) held against its gate: the relative bpb increase against
    ``max_bpb_increase`` and the KL divergence against ``max_kl`` (either may be null: not held).
    Returns the rows (every figure, its limit and the verdict) and the failed ones."""
    rows = []
    for variant in table["variants"][1:]:
        gate = gates.get(gate_name(variant["name"])) or {}
        for lang in table["languages"]:
            increase, kl = variant["bpb_increase"][lang], variant["kl"][lang]
            bpb_limit, kl_limit = gate.get("max_bpb_increase"), gate.get("max_kl")
            failed = [f"bpb {increase:+.2%} > {bpb_limit:+.2%}"] if bpb_limit is not None and increase > bpb_limit else []
            failed += [f"KL {kl:.3g} > {kl_limit:.3g}"] if kl_limit is not None and kl > kl_limit else []
            verdict = "no gate" if bpb_limit is None and kl_limit is None else ("FAIL: " + ", ".join(failed) if failed else "pass")
            rows.append({"variant": variant["name"], "language": lang, "bpb": variant["bpb"][lang], "bpb_increase": increase,
                         "max_bpb_increase": bpb_limit, "kl": kl, "max_kl": kl_limit, "verdict": verdict})
    return {"reference": table["reference"], "gates": gates, "rows": rows,
            "failed": [r for r in rows if r["verdict"].startswith("FAIL")]}


def gates_markdown(result: dict, only_failed: bool = False) -> str:
    from tabulate import tabulate

    rows = [[r["variant"], r["language"], f"{r['bpb']:.4f}", f"{r['bpb_increase']:+.2%}",
             "-" if r["max_bpb_increase"] is None else f"{r['max_bpb_increase']:+.2%}", f"{r['kl']:.5f}",
             "-" if r["max_kl"] is None else f"{r['max_kl']:.4f}", r["verdict"]]
            for r in (result["failed"] if only_failed else result["rows"])]
    table = tabulate(rows, headers=["variant", "language", "bpb", "bpb increase", "limit", "KL", "limit", "verdict"],
                     tablefmt="github", disable_numparse=True, colalign=("left", "left", *["right"] * 5, "left"))
    return (f"# Quantization gates\n\nEach variant against {result['reference']} per language: relative bits-per-byte "
            "increase and KL divergence (nats per token), with the run config's limits (`quantization.gates`; - : not held).\n\n"
            f"{table}\n")


def write_gates(result: dict, out_json: str | Path, out_md: str | Path) -> None:
    write_text(out_json, json.dumps(result, indent=2) + "\n")
    write_text(out_md, gates_markdown(result))
