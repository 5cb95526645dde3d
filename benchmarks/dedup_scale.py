"""The sort-based dedup stages at the size of a big language: 1 M, 10 M and 50 M documents.

    python benchmarks/dedup_scale.py [--sizes 1000000,10000000,50000000] [--shard-docs 250000]
                                     [--dup-share 0.02] [--band-jobs 2] [--no-peer] [--dir DIR]

Synthetic signatures of one language (random MinHash rows, 128 permutations, in ``--shard-docs``
shards, the files prepare writes) with planted duplicate clusters: ``--dup-share`` of the documents are
copies of an earlier document, half exact (same exact key and MinHash row), half near (1-3 of the 16
bands of 8 values replaced, estimated Jaccard 0.81-0.94). Random rows are never similar to each other, so
the planted copies are the truth. The stages run as in the DAG, each in its own process: the band jobs
(``--band-jobs`` of them, the 17 bands dealt among them; each reads the signatures once) and the
language's job (clusters, then each shard's codes into the assignment file). Each reports its wall time
and peak RSS (``VmHWM``).

The peer, at the first size only: today's in-memory way, every signature in one process and
``datasketch.MinHashLSH`` queried and filled document by document (kept documents only, candidates
verified against the threshold); the agreement of its decisions with the sort-based ones is reported.
The last line is one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")
sys.path.insert(0, SRC)

from euroflow.data.minhash import band_ids, band_layout, band_parts  # noqa: E402

THRESHOLD, NUM_PERM, WEIGHTS = 0.75, 128, (0.1, 0.9)  # the run config's defaults

STAGE = r"""
import json, sys, time
sys.path.insert(0, {src!r})
started = time.perf_counter()
{body}
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({{"seconds": time.perf_counter() - started, "peak_rss_mb": int(hwm.split()[1]) / 1024, **result}}))
"""

BAND_JOB = """
from euroflow.data.minhash import band_pairs
report = band_pairs({paths!r}, {bands!r}, {out!r}, threshold={threshold}, num_perm={num_perm}, weights={weights!r})
result = {{"pairs": sum(report["pairs"].values()), "ranges": report["ranges"]}}
"""

LANGUAGE_JOB = """
import numpy as np
from euroflow.data.dedup import dedup_stream, write_assignments, EXACT
stream = dedup_stream({paths!r}, threshold={threshold}, num_perm={num_perm}, valid_fraction=0.02, near=True,
                      weights={weights!r}, pair_paths={pairs!r})
removed = []
report = {{}}
def codes():
    offset = 0
    for item in stream:
        if isinstance(item, dict):
            report.update(item)
            continue
        removed.append(np.flatnonzero(item >= EXACT) + offset)
        offset += len(item)
        yield item
write_assignments({out!r}, codes(), [str(i) for i in range({shards})])
np.save({removed_out!r}, np.concatenate(removed))
result = {{"exact": report["exact_duplicates"], "near": report["near_duplicates"]}}
"""


def make_language(root: Path, docs: int, shard_docs: int, dup_share: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Signature files of one language; returns their paths and the sorted ids of the planted copies."""
    rng = np.random.default_rng(seed)
    copies = rng.choice(np.arange(docs // 10, docs), size=int(docs * dup_share), replace=False)
    copies.sort()
    # an earlier document in the same or the previous shard (it may itself be a copy)
    sources = np.maximum(copies - rng.integers(1, shard_docs, size=len(copies)), 0)
    near = rng.random(len(copies)) < 0.5
    params = {"num_perm": NUM_PERM, "ngram": 5, "seed": 1, "scheme": "affine32", "format": 1}
    paths = []
    # rows are made in document order so that a copy's source row exists when the copy is written
    rows_of: dict[int, np.ndarray] = {}

    def shard_rows(s: int) -> tuple[np.ndarray, np.ndarray]:
        if s in rows_of:
            return rows_of[s]
        lo, hi = s * shard_docs, min(docs, (s + 1) * shard_docs)
        gen = np.random.default_rng([seed, s])
        minhash = gen.integers(0, 2**32, size=(hi - lo, NUM_PERM), dtype=np.uint32)
        exact = gen.integers(0, 256, size=(hi - lo, 16), dtype=np.uint8)
        mine = np.flatnonzero((copies >= lo) & (copies < hi))
        for k in mine.tolist():  # in order: a copy's source is final before the copy is made
            c, src = int(copies[k]), int(sources[k])
            if src >= lo:
                src_minhash, src_exact = minhash[src - lo], exact[src - lo]
            else:
                other_minhash, other_exact = shard_rows(src // shard_docs)
                src_minhash, src_exact = other_minhash[src % shard_docs], other_exact[src % shard_docs]
            minhash[c - lo] = src_minhash
            if near[k]:
                edited = gen.choice(16, size=int(gen.integers(1, 4)), replace=False)
                for band in edited.tolist():
                    minhash[c - lo, band * 8 : band * 8 + 8] = gen.integers(0, 2**32, 8, dtype=np.uint32)
                exact[c - lo] = gen.integers(0, 256, 16, dtype=np.uint8)
            else:
                exact[c - lo] = src_exact
        rows_of[s] = (minhash, exact)
        if len(rows_of) > 2:  # a shard's copies have their sources in it or in the one before
            rows_of.pop(min(rows_of))
        return minhash, exact

    for s in range(-(-docs // shard_docs)):
        minhash, exact = shard_rows(s)
        path = root / f"{s:05d}.sig.npz"
        with open(path, "wb") as f:
            np.savez(f, exact=exact, minhash=minhash, params=np.array(json.dumps(params)))
        paths.append(str(path))
    return paths, copies


def stage(body: str) -> dict:
    script = STAGE.format(src=SRC, body=body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"stage failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_memory_peer(paths: list[str]) -> tuple[np.ndarray, float]:
    """Removed ids the in-memory datasketch LSH way (what euroflow did before), and its wall time."""
    from datasketch import LeanMinHash, MinHashLSH

    started = time.perf_counter()
    exact = np.concatenate([np.load(p)["exact"] for p in paths])
    minhash = np.concatenate([np.load(p)["minhash"] for p in paths])
    _, first = np.unique(exact.view(np.dtype((np.void, 16))).ravel(), return_index=True)
    removed = np.ones(len(exact), dtype=bool)
    removed[first] = False
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, weights=WEIGHTS)
    for i in np.flatnonzero(~removed).tolist():
        row = minhash[i]
        sketch = LeanMinHash(seed=1, hashvalues=row, scheme="affine32")
        candidates = lsh.query(sketch)
        if candidates and (np.count_nonzero(minhash[candidates] == row, axis=1) / NUM_PERM).max() >= THRESHOLD:
            removed[i] = True
            continue
        lsh.insert(i, sketch, check_duplication=False)
    return np.flatnonzero(removed), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000,50000000")
    parser.add_argument("--shard-docs", type=int, default=250_000)
    parser.add_argument("--dup-share", type=float, default=0.02)
    parser.add_argument("--band-jobs", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--dir", help="scratch directory (default: a temporary one; 50 M documents need ~35 GB)")
    args = parser.parse_args()
    bands, _ = band_layout(THRESHOLD, NUM_PERM, WEIGHTS)
    parts = band_parts(band_ids(True, bands), args.band_jobs)
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        root = Path(tempfile.mkdtemp(prefix=f"dedup-scale-{size}-", dir=args.dir))
        try:
            made = time.perf_counter()
            paths, truth = make_language(root, size, args.shard_docs, args.dup_share)
            made = time.perf_counter() - made
            jobs = {}
            pair_files = []
            for k, part in enumerate(parts):
                out = str(root / f"bands{k}.npz")
                jobs[f"band job {k} ({len(part)} bands)"] = stage(BAND_JOB.format(
                    paths=paths, bands=part, out=out, threshold=THRESHOLD, num_perm=NUM_PERM, weights=WEIGHTS))
                pair_files.append(out)
            removed_out = str(root / "removed.npy")
            jobs["language job (clusters, codes)"] = stage(LANGUAGE_JOB.format(
                paths=paths, threshold=THRESHOLD, num_perm=NUM_PERM, weights=WEIGHTS, pairs=pair_files,
                out=str(root / "assignment.npz"), shards=len(paths), removed_out=removed_out))
            removed = np.load(removed_out)
            hit = np.intersect1d(removed, truth).size
            wall = sum(j["seconds"] for j in jobs.values())
            result = {
                "docs": size, "shards": len(paths), "jobs": jobs,
                "peak_rss_mb_max_job": round(max(j["peak_rss_mb"] for j in jobs.values()), 1),
                "wall_s": round(wall, 1), "docs_per_s": round(size / wall), "make_s": round(made, 1),
                "recall": round(hit / len(truth), 5), "precision": round(hit / max(len(removed), 1), 5),
                "planted": int(len(truth)), "removed": int(len(removed)),
            }
            if not args.no_peer and not results:
                peer, peer_s = in_memory_peer(paths)
                agree = size - np.setxor1d(peer, removed).size
                result["peer"] = {"seconds": round(peer_s, 1), "removed": int(len(peer)), "agreement": agree / size,
                                  "recall": round(np.intersect1d(peer, truth).size / len(truth), 5)}
            results[size] = result
        finally:
            shutil.rmtree(root, ignore_errors=True)

    print(f"{'documents':>11} {'stage':34} {'seconds':>8} {'peak RSS MB':>12}")
    for size, r in results.items():
        for name, job in r["jobs"].items():
            print(f"{size:>11,} {name:34} {job['seconds']:8.1f} {job['peak_rss_mb']:12.0f}")
        print(f"{size:>11,} {'all stages':34} {r['wall_s']:8.1f} {r['peak_rss_mb_max_job']:12.0f}   "
              f"{r['docs_per_s']:,} docs/s, recall {r['recall']}, precision {r['precision']}")
        if "peer" in r:
            p = r["peer"]
            print(f"{size:>11,} {'peer: in-memory datasketch LSH':34} {p['seconds']:8.1f} {'':>12}   "
                  f"recall {p['recall']}, agreement {p['agreement']:.6f}")
    sizes = list(results)
    summary = {str(size): {k: v for k, v in r.items() if k != "jobs"} for size, r in results.items()}
    if len(sizes) > 1:
        summary["rss_ratio_largest_to_smallest"] = round(results[sizes[-1]]["peak_rss_mb_max_job"] / results[sizes[0]]["peak_rss_mb_max_job"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
