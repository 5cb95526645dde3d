"""prepare_shard's documents per second on one core: this tree against an earlier revision, same shard, same run.

    python benchmarks/prepare_throughput.py [--docs 20000] [--words 400] [--lang de]
                                            [--baseline 96e2475^] [--repeat 3] [--work-dir DIR]

The shard: ``--docs`` HPLT v2 style documents of the language, each random NTREX-128 sentences joined until it
has ``--words`` words (web documents of the big HPLT languages are a few hundred words long). Both trees run
``prepare_shard`` on it with the schema's defaults (``min_chars`` 0), each run in its own process (one core,
imports included, as a prepare job runs); this tree also checks every document against the language's
decontamination index (FLORES, Belebele, EXAMS, XCOPA; built beforehand, as the DAG's contamination_index job
does), as the DAG runs it. The baseline is ``git archive`` of ``--baseline``'s ``src/`` and schemas (default: the revision
before issue 12, whose prepare signed with SHA-1 per shingle and had no decontamination). The best of
``--repeat`` rounds (the trees take turns) counts. Both must keep the same documents. Prints a table, then one line of JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import orjson
import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA_ROOT = REPO.parent / "shared" / "data" / "multilingual"

CHILD = """
import inspect, json, sys, time
args = json.loads(sys.argv[1])
started = time.perf_counter()
def peak_rss_mb():  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec
    line = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    return int(line.split()[1]) / 1024
from euroflow.data.prepare import prepare_shard
extra = {}
if args["index"] and "contamination_index" in inspect.signature(prepare_shard).parameters:
    extra = {"contamination_index": args["index"]}
params = {"min_chars": 0, **({"decontamination": {"ngram": 13, "action": "remove"}} if extra else {})}
out = args["out"]
report = prepare_shard(args["shard"], args["lang"], out + "/s.jsonl.zst", out + "/s.sig.npz", out + "/s.lengths.npy",
                       out + "/s.report.json", params, **extra)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "docs_in": report["docs_in"], "docs_out": report["docs_out"],
                  "decontamination": bool(extra), "peak_rss_mb": peak_rss_mb()}))
"""


def build_shard(path: Path, lang: str, docs: int, words: int) -> int:
    from euroflow.data.ntrex import ntrex_documents

    records = ntrex_documents(DATA_ROOT, lang)
    sentences = [line for record in records for line in record["text"].split("\n") if line.strip()]
    rng = random.Random(0)
    size = 0
    with open(path, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as out:
        for i in range(docs):
            segments, count = [], 0
            while count < words:
                segments.append(rng.choice(sentences))
                count += len(segments[-1].split())
            line = orjson.dumps({**records[0], "id": f"bench/{i}", "text": "\n".join(segments),
                                 "seg_langs": records[0]["seg_langs"][:1] * len(segments)}) + b"\n"
            out.write(line)
            size += len(line)
    return size


def build_index(path: Path, lang: str) -> dict:
    from euroflow.data.contamination import build_index as build, evaluation_texts, write_index

    hashes, masks, summary = build(evaluation_texts(DATA_ROOT, lang, ["belebele", "exams", "xcopa"]), 13)
    write_index(path, hashes, masks, {"ngram": 13, "sets": summary})
    return summary


def baseline_tree(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, "src", "workflow/schemas"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run(tree: Path, shard: Path, lang: str, index: Path | None, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    args = {"shard": str(shard), "lang": lang, "index": str(index) if index else None, "out": str(out)}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree / "src")})
    if proc.returncode != 0:
        raise SystemExit(f"prepare in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--words", type=int, default=400)
    parser.add_argument("--lang", default="de")
    parser.add_argument("--baseline", default="96e2475^")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    shard, index = work / f"{args.lang}.jsonl.zst", work / f"{args.lang}.contamination.npz"
    shard_bytes = build_shard(shard, args.lang, args.docs, args.words)
    sets = build_index(index, args.lang)
    baseline = baseline_tree(args.baseline, work / "baseline")
    trees = {"baseline": (baseline, None), "euroflow": (REPO, index), "euroflow, no decontamination": (REPO, None)}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.repeat):  # round-robin, so that a slow spell of the machine hits every tree alike
        for name, (tree, idx) in trees.items():
            runs[name].append(run(tree, shard, args.lang, idx, work / "out" / name.split(",")[0]))
    rows = {name: min(found, key=lambda r: r["seconds"]) for name, found in runs.items()}
    if len({r["docs_out"] for r in rows.values()}) != 1:
        raise SystemExit(f"the trees kept different documents: {[(n, r['docs_out']) for n, r in rows.items()]}")
    base = rows["baseline"]["seconds"]
    print(f"prepare_shard, {args.docs:,} {args.lang} documents of ~{args.words} words ({shard_bytes / 1e6:.0f} MB of JSON), "
          f"best of {args.repeat}; evaluation n-grams: {sum(s['ngrams'] for s in sets.values()):,}")
    print(f"| tree | seconds | docs/s | peak RSS MB | speed-up |\n|---|---|---|---|---|")
    for name, row in rows.items():
        label = name if name != "baseline" else f"baseline ({args.baseline})"
        print(f"| {label} | {row['seconds']:.2f} | {args.docs / row['seconds']:,.0f} | {row['peak_rss_mb']:.0f} | "
              f"{base / row['seconds']:.2f} |")
    ours = rows["euroflow"]
    print(json.dumps({
        "docs": args.docs, "words": args.words, "lang": args.lang, "baseline": args.baseline,
        "baseline_docs_per_s": round(args.docs / base), "docs_per_s": round(args.docs / ours["seconds"]),
        "docs_per_s_no_decontamination": round(args.docs / rows["euroflow, no decontamination"]["seconds"]),
        "speedup": round(base / ours["seconds"], 2), "peak_rss_mb": round(ours["peak_rss_mb"]),
        "baseline_peak_rss_mb": round(rows["baseline"]["peak_rss_mb"]),
    }))


if __name__ == "__main__":
    main()
