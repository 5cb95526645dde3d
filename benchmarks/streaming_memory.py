"""Peak memory of the per-shard data stages on one big shard: prepare (filters + signatures) then tokenize.

Builds a synthetic HPLT v2 style ``.jsonl.zst`` shard of ``--gb`` GB of JSON (default 2.0) by repeating the
NTREX-128 German documents (each copy numbered, so they are distinct
documents), then runs ``prepare_shard`` and ``tokenize_shard`` on it, each in its own process, and reports
each one's peak resident memory (``ru_maxrss`` of the child). Goal: < 1.5 GB whatever the shard size.

    .venv/bin/python benchmarks/streaming_memory.py [--gb 2.0] [--work-dir DIR] [--tokenizer DIR]

The tokenizer defaults to the demo's (``results/tiny/tokenizer``); without one a small SentencePiece
tokenizer is trained on the German NTREX text. Prints a table, then one line of JSON.
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

import orjson
import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CHILD = """
import json, resource, sys, time
stage, args = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
if stage == "prepare":
    from euroflow.data.prepare import prepare_shard
    result = prepare_shard(args["shard"], "de", args["out"], args["sig"], args["lengths"], args["report"], {"min_chars": 0})
    summary = {"docs": result["docs_out"]}
else:
    from euroflow.data.tokenize import tokenize_shard
    result = tokenize_shard(args["out"], args["tokenizer"], {"train": args["prefix"]})
    summary = {"docs": result["docs"]["total"], "tokens": result["tokens"]["total"]}
summary["seconds"] = time.perf_counter() - started
summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(summary))
"""


def build_shard(path: Path, gb: float, data_root: Path) -> tuple[int, int]:
    from euroflow.data.ntrex import ntrex_documents

    docs = ntrex_documents(data_root, "de")
    target = int(gb * 1e9)
    written = count = 0
    with open(path, "wb") as raw, zstandard.ZstdCompressor(level=1, threads=2).stream_writer(raw) as out:
        while written < target:
            for doc in docs:
                line = orjson.dumps({**doc, "id": f"{doc['id']}/{count}", "text": f"{count}. {doc['text']}"}) + b"\n"
                out.write(line)
                written += len(line)
                count += 1
                if written >= target:
                    break
    return written, count


def run_child(stage: str, args: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, stage, json.dumps(args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="uncompressed JSON size of the shard")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--tokenizer", type=Path, default=REPO / "results" / "tiny" / "tokenizer")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("EUROFLOW_DATA", REPO.parent / "shared" / "data" / "multilingual")))
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="euroflow-streaming-"))
    work.mkdir(parents=True, exist_ok=True)
    shard = work / "big.jsonl.zst"
    started = time.perf_counter()
    json_bytes, docs = build_shard(shard, args.gb, args.data_root)
    built = time.perf_counter() - started
    tokenizer = args.tokenizer
    if not (tokenizer / "tokenizer_meta.json").is_file():
        from euroflow.data.ntrex import ntrex_documents
        from euroflow.tokenizer.train import train_tokenizer_from_texts

        texts = [d["text"] for d in ntrex_documents(args.data_root, "de")]
        tokenizer = Path(train_tokenizer_from_texts(texts, 4000, work / "tokenizer"))
    paths = {"shard": str(shard), "out": str(work / "kept.jsonl.zst"), "sig": str(work / "kept.sig.npz"),
             "lengths": str(work / "kept.lengths.npy"), "report": str(work / "kept.report.json"),
             "tokenizer": str(tokenizer), "prefix": str(work / "kept.train")}
    prepare = run_child("prepare", paths)
    tokenize = run_child("tokenize", paths)
    rows = [("prepare_shard (filters, NFC, MinHash signatures)", prepare), ("tokenize_shard (gigatoken, streamed)", tokenize)]
    print(f"shard: {json_bytes / 1e9:.2f} GB of JSON lines ({shard.stat().st_size / 1e6:.0f} MB zstd), {docs:,} documents; built in {built:.0f} s")
    print(f"{'stage':52} {'seconds':>8} {'peak RSS MB':>12}")
    for name, r in rows:
        print(f"{name:52} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f}")
    print(json.dumps({
        "shard_json_gb": round(json_bytes / 1e9, 3), "shard_zst_mb": round(shard.stat().st_size / 1e6, 1), "docs": docs,
        "prepare_s": round(prepare["seconds"], 1), "prepare_peak_rss_mb": round(prepare["peak_rss_mb"]),
        "tokenize_s": round(tokenize["seconds"], 1), "tokenize_peak_rss_mb": round(tokenize["peak_rss_mb"]),
        "tokens": tokenize.get("tokens"), "peak_rss_mb": round(max(prepare["peak_rss_mb"], tokenize["peak_rss_mb"])),
    }))


if __name__ == "__main__":
    main()
