"""What a run left behind: the artifacts with their sizes, and the headline figures."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from euroflow.paths import SPLITS, RunPaths


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def artifacts(paths: RunPaths) -> list[tuple[str, str]]:
    quant = paths.config["quantization"]
    rows = [
        ("HPLT-style shards", paths.raw_shard("{lang}")),
        ("evaluation n-grams (decontamination)", paths.contamination_index("{lang}")),
        ("prepared shards + reports", paths.filtered("{lang}", "{shard}", "jsonl.zst")),
        ("duplicate pairs (band job 0)", paths.dedup_pairs("{lang}", "0")),
        ("language statistics", paths.shard_stats("{lang}")),
        ("language weights", f"{paths.blend_dir}/weights.md"),
        ("Megatron blend per split", f"{paths.blend_dir}/blend.md"),
        ("tokenizer", paths.tokenizer),
        ("tokenizer parity report", paths.parity_report("md")),
        ("indexed datasets", paths.tokenized_prefix("{lang}", "{shard}", "{split}") + ".bin"),
        ("merged per language", paths.merged_prefix("{lang}", "{split}") + ".bin"),
        ("Megatron checkpoints", paths.checkpoints),
        ("training log", paths.train_log),
        ("loss curve", paths.loss_curve),
        ("Hugging Face export", paths.hf_model),
        ("evaluation report", paths.eval_file("report.md")),
        ("evaluation chart", paths.eval_file("report.png")),
    ]
    from euroflow.quantize.kquant import KQUANT_FTYPES

    if quant["imatrix"]["tokens_per_language"] and set(quant["gguf"]) & set(KQUANT_FTYPES):
        rows.append(("importance matrix", paths.imatrix))
    rows += [(f"GGUF {q}", paths.gguf(q)) for q in quant["gguf"]]
    if quant["torch_int8"]:
        rows.append(("torch int8", paths.int8))
    rows += [("quantization quality", paths.quality("md")), ("size against quality", paths.quality("png")),
             ("quantization gates", paths.gates("md")), ("provenance store", paths.provenance_db)]
    return rows


def headline(paths: RunPaths) -> list[str]:
    lines = []
    train_log = Path(paths.train_log)
    if train_log.exists():
        steps = [json.loads(line) for line in train_log.read_text().splitlines() if line.strip()]
        if steps:
            lines.append(f"training loss {steps[0]['loss']:.3f} (step {steps[0]['step']}) -> {steps[-1]['loss']:.3f} (step {steps[-1]['step']})")
    report = Path(paths.eval_file("report.json"))
    if report.exists():
        bpb = json.loads(report.read_text()).get("bpb")
        if bpb:
            per_lang = {lang: r["bpb"] for lang, r in bpb["languages"].items()}
            worst = max(per_lang, key=per_lang.get)
            lines.append(
                f"FLORES test bits-per-byte: mean {sum(per_lang.values()) / len(per_lang):.3f} over {len(per_lang)} languages,"
                f" worst {worst} {per_lang[worst]:.3f} (uniform-byte baseline {bpb['baseline_bpb']:.0f})"
            )
    return lines


def show(config: dict) -> int:
    paths = RunPaths(config)
    console = Console(width=max(Console().width, 120))
    table = Table(
        "artifact", "path ({lang}: each language, {shard}: each of its shards)", "size", title=f"euroflow run '{config['run']['name']}'"
    )
    missing = 0
    for what, where in artifacts(paths):
        files = [Path(where)]
        if "{lang}" in where:
            files = [
                Path(where.format(lang=lang, shard=shard, split=split))
                for lang in config["languages"]
                for shard in (paths.shard_ids(lang) if "{shard}" in where else [None])
                for split in (SPLITS if "{split}" in where else [None])
            ]
        present = [p for p in files if p.exists()]
        missing += len(files) - len(present)
        size = _human(sum(_size(p) for p in present)) if present else "missing"
        table.add_row(what, where, size if len(present) == len(files) else f"{len(present)}/{len(files)} present")
    console.print(table)
    for line in headline(paths):
        console.print(line)
    return 1 if missing else 0
