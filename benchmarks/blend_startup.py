"""Training start-up on a blend of the production shape: 35 languages x 300 shards, train and valid.

    python benchmarks/blend_startup.py [--langs 35] [--shards 300] [--docs 40] [--peer-shards 40] [--no-peer]

Synthetic tokenize outputs (``--docs`` documents of 20-200 tokens per shard and split, written in the
exact ``.bin``/``.idx`` format of ``euroflow data tokenize``) go through the real data path: one
``merge_language`` per language, the blend (``compute_blend``, one prefix per language and split), then
``euroflow.train.data.build_datasets`` in a fresh process, cold (no index cache) and cached (the indices
megatron wrote in the cold start). Each start-up reports its wall time, the files it holds open once
the datasets are built, and its peak RSS.

The peer is the same start-up on the per-shard blend, one Megatron prefix per shard and split (what
euroflow did before; Megatron-LM's usual data_path of many files). At the full shape it needs about
21,000 x 6 open files, more than most nodes allow (here too, probably: it then fails with EMFILE), so
it runs on the first ``--peer-shards`` shards of each language, and the merged blend is timed on that
subset as well: the ratios compare like with like. The last line is one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from euroflow.data.merge import merge_language  # noqa: E402
from euroflow.data.sampling import compute_blend  # noqa: E402
from euroflow.data.tokenize import _write_index  # noqa: E402
from euroflow.languages import LANGUAGES  # noqa: E402

VOCAB = 32000
SPLITS = ("train", "valid")

START_UP = r"""
import json, os, resource, sys, time
sys.path.insert(0, {src!r})
import yaml
from euroflow.config import validate
from euroflow.train.data import build_datasets
from euroflow.train.loop import single_process_group
config = validate(yaml.safe_load(open({config!r})), "tiny")
started = time.perf_counter()
with single_process_group():
    data = build_datasets(config, {blend!r}, {tokenizer!r}, {cache!r}, train_samples={train}, valid_samples={valid})
    seconds = time.perf_counter() - started
    print(json.dumps({{"seconds": seconds, "open_files": len(os.listdir("/proc/self/fd")),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "train_samples": len(data.train)}}))
"""


def _write_dataset(prefix: Path, rng: np.random.Generator, docs: int) -> int:
    lengths = rng.integers(20, 200, size=docs).astype(np.int32)
    tokens = rng.integers(3, VOCAB, size=int(lengths.sum()), dtype=np.uint16)
    prefix.with_name(prefix.name + ".bin").write_bytes(tokens.tobytes())
    _write_index(prefix.with_name(prefix.name + ".idx"), lengths, np.uint16)
    return int(lengths.sum())


def make_shards(root: Path, langs: list[str], shards: int, docs: int) -> dict[str, list[dict]]:
    """Per language, one tokenize report per shard, as ``euroflow data tokenize`` writes them."""
    rng = np.random.default_rng(0)
    reports: dict[str, list[dict]] = {}
    for lang in langs:
        (root / "tokenized" / lang).mkdir(parents=True)
        reports[lang] = []
        for shard in range(shards):
            prefixes = {split: root / "tokenized" / lang / f"{shard:05d}.{split}" for split in SPLITS}
            counts = {split: docs if split == "train" else max(docs // 20, 1) for split in SPLITS}
            tokens = {split: _write_dataset(prefixes[split], rng, counts[split]) for split in SPLITS}
            reports[lang].append({"prefixes": {s: str(p) for s, p in prefixes.items()},
                                  "docs": {**counts, "total": sum(counts.values())},
                                  "tokens": {**tokens, "total": sum(tokens.values())}, "max_token_id": VOCAB - 1})
    return reports


def write_blend(path: Path, langs: list[str], reports: dict[str, list[dict]]) -> int:
    weights = {"policy": "temperature", "params": {"alpha": 0.3},
               "languages": [{"lang": lang, "weight": 1 / len(langs)} for lang in langs]}
    blend = compute_blend(weights, reports, None)
    path.write_text(json.dumps(blend))
    return sum(len(blend["megatron_blend_per_split"][split]) // 2 for split in SPLITS)


def start_up(root: Path, name: str, blend: Path, tokenizer: Path, config: Path, cache: Path) -> dict:
    script = START_UP.format(src=str(REPO / "src"), config=str(config), blend=str(blend), tokenizer=str(tokenizer),
                             cache=str(cache), train=20000, valid=1000)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"failed": lines[-1][:300] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", type=int, default=35)
    parser.add_argument("--shards", type=int, default=300)
    parser.add_argument("--docs", type=int, default=40, help="train documents per shard (valid: 1/20 of it)")
    parser.add_argument("--peer-shards", type=int, default=40)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    langs = list(LANGUAGES)[: args.langs]
    import yaml

    with tempfile.TemporaryDirectory(prefix="euroflow-blend-startup-") as tmp:
        root = Path(tmp)
        tokenizer = root / "tokenizer"
        tokenizer.mkdir()
        (tokenizer / "tokenizer_meta.json").write_text(json.dumps({"vocab_size": VOCAB, "bos_id": 1, "eos_id": 2}))
        config = yaml.safe_load((REPO / "workflow" / "configs" / "tiny.yaml").read_text())
        config["languages"] = langs
        config["evaluation"]["bpb_languages"] = langs[:1]
        config_path = root / "run.yaml"
        config_path.write_text(yaml.safe_dump(config))

        started = time.perf_counter()
        reports = make_shards(root, langs, args.shards, args.docs)
        make_s = time.perf_counter() - started

        def merged_blend(name: str, shards: int) -> tuple[Path, int, float]:
            started = time.perf_counter()
            merged = {}
            for lang in langs:
                out = {split: root / name / f"{lang}.{split}" for split in SPLITS}
                (root / name).mkdir(exist_ok=True)
                merged[lang] = [merge_language(lang, reports[lang][:shards], out)]
            seconds = time.perf_counter() - started
            blend = root / name / "blend.json"
            return blend, write_blend(blend, langs, merged), seconds

        rows = []
        blend, prefixes, merge_s = merged_blend("merged", args.shards)
        cold = start_up(root, "merged", blend, tokenizer, config_path, root / "cache-merged")
        cached = start_up(root, "merged", blend, tokenizer, config_path, root / "cache-merged")
        rows.append(("merged, full shape", prefixes, merge_s, cold, cached))
        result = {"languages": len(langs), "shards_per_language": args.shards, "prefixes": prefixes,
                  "shard_prefixes": len(langs) * args.shards * 2, "make_s": round(make_s, 1), "merge_s": round(merge_s, 1),
                  "cold_s": cold.get("seconds"), "cached_s": cached.get("seconds"),
                  "open_files": max(cold.get("open_files", 0), cached.get("open_files", 0)),
                  "peak_rss_mb": max(cold.get("peak_rss_mb", 0), cached.get("peak_rss_mb", 0))}
        if not args.no_peer:
            peer_blend = root / "per-shard-blend.json"
            peer_prefixes = write_blend(peer_blend, langs, {lang: reports[lang][: args.peer_shards] for lang in langs})
            peer_cold = start_up(root, "peer", peer_blend, tokenizer, config_path, root / "cache-peer")
            peer_cached = start_up(root, "peer", peer_blend, tokenizer, config_path, root / "cache-peer")
            subset, subset_prefixes, subset_merge_s = merged_blend("merged-subset", args.peer_shards)
            sub_cold = start_up(root, "subset", subset, tokenizer, config_path, root / "cache-subset")
            sub_cached = start_up(root, "subset", subset, tokenizer, config_path, root / "cache-subset")
            rows.append((f"per shard (peer), {args.peer_shards} shards", peer_prefixes, None, peer_cold, peer_cached))
            rows.append((f"merged, {args.peer_shards} shards", subset_prefixes, subset_merge_s, sub_cold, sub_cached))

            def ratio(a, b):
                return round(a / b, 1) if isinstance(a, float) and isinstance(b, float) and b > 0 else None

            result["peer"] = {"shards_per_language": args.peer_shards, "prefixes": peer_prefixes,
                              "cold_s": peer_cold.get("seconds"), "cached_s": peer_cached.get("seconds"),
                              "open_files": peer_cached.get("open_files"), "failed": peer_cold.get("failed") or peer_cached.get("failed"),
                              "cold_ratio": ratio(peer_cold.get("seconds"), sub_cold.get("seconds")),
                              "cached_ratio": ratio(peer_cached.get("seconds"), sub_cached.get("seconds")),
                              "open_files_ratio": ratio(float(peer_cached.get("open_files") or 0), float(sub_cached.get("open_files") or 0))}
    header = f"{'blend':34} {'prefixes':>8} {'merge s':>8} {'cold s':>8} {'cached s':>9} {'open files':>10} {'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    for name, count, merge_s, cold, cached in rows:
        def fmt(run, key, spec):
            return format(run[key], spec) if key in run else "failed"
        print(f"{name:34} {count:>8} {'' if merge_s is None else format(merge_s, '.1f'):>8} {fmt(cold, 'seconds', '.1f'):>8} "
              f"{fmt(cached, 'seconds', '.1f'):>9} {fmt(cached, 'open_files', 'd'):>10} {fmt(cached, 'peak_rss_mb', '.0f'):>11}")
        for run in (cold, cached):
            if "failed" in run:
                print(f"  failed: {run['failed']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
