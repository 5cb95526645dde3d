"""Tokenization throughput: euroflow's per-shard stage vs Megatron-LM's two preprocessing tools, same input,
same tokenizer, same cores, in one run.

    python benchmarks/tokenize_throughput.py [--size-mb 200] [--work-dir DIR] [--data-root DIR] [--repeat 3] [--quick]

The input is multilingual HPLT-style JSONL (``{"id", "text", "lang"}`` per line) made by repeating NTREX-128
(35 languages, 123 documents each, from the shared data bundle; never FLORES or Belebele): every round
takes each language's documents in a new random order with their sentences shuffled, until ``--size-mb``
of JSONL. It is written twice, plain ``.jsonl`` (what the Megatron tools read) and ``.jsonl.zst`` (what
euroflow reads). The tokenizer is a 32k byte-level BPE trained with Hugging Face ``tokenizers`` on the
first round, in a directory holding only ``tokenizer.json``; every tool appends the id of
``<|endoftext|>`` (the EOS) to each document, nothing else. Both are cached in ``--work-dir``.

Each tool runs in its own subprocess, timed in-process from loading the tokenizer (imports excluded) to
the finished ``.idx``; the wall time of the whole subprocess (Python start-up and imports included) is
reported too. Peak RSS is sampled over the subprocess and its children (psutil) and combined with its own
``ru_maxrss``.

- ``euroflow``: ``euroflow.data.tokenize.tokenize_shard`` on the ``.jsonl.zst``.
- ``gigatoken``: Megatron-LM's ``tools/preprocess_data_fast.py`` path re-created: the Hugging Face
  tokenizer wrapped as ``gigatoken.Tokenizer(hf).as_hf()``, ``encode_files(JsonlFileSource([jsonl],
  field="text"), parallel=True)`` on the whole file, the EOD column appended with ``ak.concatenate``, then
  ``IndexedDatasetBuilder.add_documents`` (not in megatron-core 0.16.1: re-created as one write of the
  flat tokens plus the lengths, the fastest form it can take) and ``finalize``.
- ``baseline``: Megatron-LM's ``tools/preprocess_data.py`` approach: ``multiprocessing.Pool`` of 2 workers,
  ``imap`` over the lines (chunksize 25), ``json.loads`` + ``tokenizer.encode`` + EOD per document in the
  workers, ``IndexedDatasetBuilder.add_document`` per document in the main process.

The three ``.bin``/``.idx`` pairs must be byte-identical. ``--repeat`` runs euroflow and gigatoken that
many times, alternating, and takes the median; the baseline runs once. The last line printed is one line
of JSON with the figures. Memory on a multi-GB shard is ``benchmarks/streaming_memory.py``'s measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("EUROFLOW_DATA", REPO_ROOT.parent / "shared" / "data" / "multilingual"))
DEFAULT_WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "euroflow-bench" / "tokenize"
VOCAB_SIZE = 32000
EOD = "<|endoftext|>"
THREADS = 2
GOALS = {"vs_gigatoken": 1.0, "speedup": 10.0, "peak_rss_mb": 1500.0}


# --------------------------------------------------------------------------------------------------
# input and tokenizer


def _ntrex(data_root: Path) -> tuple[list[tuple[str, int, int]], dict[str, list[str]]]:
    root = data_root / "parallel" / "ntrex128"
    if not root.is_dir():
        raise SystemExit(f"{root}: NTREX-128 not found; pass --data-root or set EUROFLOW_DATA")
    ids = [line.split("\t")[0].strip() for line in (root / "DOCUMENT_IDS.tsv").read_text(encoding="utf-8").splitlines()]
    runs: list[list] = []
    for i, doc in enumerate(ids):
        if runs and runs[-1][0] == doc:
            runs[-1][2] = i + 1
        else:
            runs.append([doc, i, i + 1])
    langs = sorted(p.stem for p in root.glob("*.txt"))
    lines = {lang: (root / f"{lang}.txt").read_text(encoding="utf-8").split("\n")[: len(ids)] for lang in langs}
    return [tuple(r) for r in runs], lines


def _documents(data_root: Path, size_bytes: int):
    """JSON lines (bytes) of documents until ``size_bytes``; round r shuffles with seed r."""
    runs, lines = _ntrex(data_root)
    written, round_ = 0, 0
    while written < size_bytes:
        rng = random.Random(round_)
        for lang in sorted(lines):
            order = list(range(len(runs)))
            rng.shuffle(order)
            for k in order:
                doc, start, end = runs[k]
                segments = lines[lang][start:end]
                rng.shuffle(segments)
                record = {"id": f"ntrex128/{doc}/{lang}/{round_}", "text": "\n".join(segments), "lang": [lang]}
                line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
                written += len(line)
                yield line
        round_ += 1


def build_input(data_root: Path, jsonl: Path, zst: Path, size_mb: float) -> None:
    import zstandard

    if jsonl.is_file() and zst.is_file():
        return
    tmp_jsonl, tmp_zst = jsonl.with_suffix(".tmp"), zst.with_suffix(".tmp")
    with open(tmp_jsonl, "wb") as plain, open(tmp_zst, "wb") as raw:
        with zstandard.ZstdCompressor(level=3).stream_writer(raw) as packed:
            for line in _documents(data_root, int(size_mb * 1e6)):
                plain.write(line)
                packed.write(line)
    os.replace(tmp_jsonl, jsonl)
    os.replace(tmp_zst, zst)


def train_tokenizer(data_root: Path, out_dir: Path) -> None:
    """A 32k byte-level BPE (Hugging Face ``tokenizers``) on the first round of the input; only ``tokenizer.json``."""
    if (out_dir / "tokenizer.json").is_file():
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    runs, lines = _ntrex(data_root)
    texts = ["\n".join(lines[lang][s:e]) for lang in sorted(lines) for _, s, e in runs]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[EOD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json.tmp"))
    os.replace(out_dir / "tokenizer.json.tmp", out_dir / "tokenizer.json")


# --------------------------------------------------------------------------------------------------
# the three tools (each runs in its own subprocess: `--tool NAME`)


def _clock() -> tuple[float, float]:
    """Wall time and CPU time (user + system, this process and its reaped children)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _elapsed(start: tuple[float, float]) -> dict:
    now = _clock()
    return {"seconds": now[0] - start[0], "cpu_s": now[1] - start[1]}


def _hf_tokenizer(tokenizer_dir: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"), eos_token=EOD)


def run_euroflow(zst: Path, tokenizer_dir: Path, prefix: Path) -> dict:
    import importlib

    from euroflow.data.tokenize import tokenize_shard

    for module in ("awkward", "gigatoken", "orjson", "pyarrow.compute", "pyarrow.json", "tokenizers", "zstandard"):
        importlib.import_module(module)  # what tokenize_shard imports lazily: imports are excluded from the timing

    start = _clock()
    result = tokenize_shard(zst, tokenizer_dir, prefix, threads=THREADS)
    return {**_elapsed(start), "tokens": result["tokens"]["total"], "docs": result["docs"]["total"], "backend": result["backend"]}


def _add_documents(builder, documents) -> None:
    """``IndexedDatasetBuilder.add_documents`` of Megatron-LM (absent from megatron-core 0.16.1): every
    document of an awkward array as one sequence, the flat tokens written at once."""
    import awkward as ak
    import numpy as np

    lengths = ak.num(documents, axis=1).to_numpy()
    builder.data_file.write(np.asarray(ak.flatten(documents).to_numpy(), dtype=builder.dtype).tobytes(order="C"))
    first = len(builder.sequence_lengths)
    builder.sequence_lengths.extend(lengths.tolist())
    builder.document_indices.extend(range(first + 1, first + len(lengths) + 1))


def run_gigatoken(jsonl: Path, tokenizer_dir: Path, prefix: Path) -> dict:
    import awkward as ak
    import gigatoken
    import numpy as np
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    start = _clock()
    hf = _hf_tokenizer(tokenizer_dir)
    tokenizer = gigatoken.Tokenizer(hf).as_hf()
    encoded = tokenizer.tokenizer.encode_files(gigatoken.JsonlFileSource([str(jsonl)], field="text"), parallel=True)
    eod_column = ak.singletons(ak.Array(np.full(len(encoded), hf.eos_token_id, dtype=np.uint32)))
    encoded = ak.concatenate([encoded, eod_column], axis=1)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=DType.optimal_dtype(len(hf)))
    _add_documents(builder, encoded)
    builder.finalize(f"{prefix}.idx")
    return {**_elapsed(start), "tokens": int(ak.sum(ak.num(encoded, axis=1))), "docs": len(encoded)}


class _BaselineEncoder:
    """Megatron-LM ``tools/preprocess_data.py``'s Encoder: a tokenizer per worker, one JSON line at a time."""

    def __init__(self, tokenizer_dir: Path):
        self.tokenizer_dir = tokenizer_dir

    def initializer(self) -> None:
        _BaselineEncoder.tokenizer = _hf_tokenizer(self.tokenizer_dir)

    def encode(self, json_line: str):
        data = json.loads(json_line)
        ids = _BaselineEncoder.tokenizer.encode(data["text"], add_special_tokens=False)
        ids.append(_BaselineEncoder.tokenizer.eos_token_id)
        return ids, [len(ids)], len(json_line)


def run_baseline(jsonl: Path, tokenizer_dir: Path, prefix: Path) -> dict:
    import multiprocessing

    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    start = _clock()
    tokenizer = _hf_tokenizer(tokenizer_dir)
    encoder = _BaselineEncoder(tokenizer_dir)
    tokens = docs = 0
    with open(jsonl, encoding="utf-8") as fin, multiprocessing.Pool(THREADS, initializer=encoder.initializer) as pool:
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=DType.optimal_dtype(len(tokenizer)))
        for ids, lengths, _ in pool.imap(encoder.encode, fin, 25):
            builder.add_document(ids, lengths)
            tokens += len(ids)
            docs += 1
        builder.finalize(f"{prefix}.idx")
    return {**_elapsed(start), "tokens": tokens, "docs": docs}


TOOLS = {"euroflow": run_euroflow, "gigatoken": run_gigatoken, "baseline": run_baseline}


def _child(args: argparse.Namespace) -> int:
    source = Path(args.input)
    result = TOOLS[args.tool](source, Path(args.tokenizer), Path(args.prefix))
    result["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))
    return 0


def run_tool(tool: str, source: Path, tokenizer_dir: Path, prefix: Path) -> dict:
    """Run one tool in a subprocess; its result plus the wall time and the peak RSS of its process tree."""
    import psutil

    for suffix in (".bin", ".idx"):
        Path(f"{prefix}{suffix}").unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--tool", tool, "--input", str(source), "--tokenizer", str(tokenizer_dir),
           "--prefix", str(prefix)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAYON_NUM_THREADS": str(THREADS)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    rss = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
                except psutil.Error:
                    rss = 0
                peak[0] = max(peak[0], rss)
                time.sleep(0.02)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed:\n{err[-3000:]}")
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["wall_s"] = wall
    result["peak_rss_mb"] = max(peak[0] / 2**20, result["ru_maxrss_mb"])
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return result


def _same_files(a: Path, b: Path) -> bool:
    import filecmp

    return all(filecmp.cmp(f"{a}{s}", f"{b}{s}", shallow=False) for s in (".bin", ".idx"))


# --------------------------------------------------------------------------------------------------


def compare(args: argparse.Namespace) -> int:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    size = 8.0 if args.quick else args.size_mb
    jsonl, zst = work / f"input-{size:g}MB.jsonl", work / f"input-{size:g}MB.jsonl.zst"
    tokenizer_dir = work / "tokenizer-bytelevel-32k"
    build_input(Path(args.data_root), jsonl, zst, size)
    train_tokenizer(Path(args.data_root), tokenizer_dir)
    out = work / "out"
    out.mkdir(exist_ok=True)
    repeat = 1 if args.quick else args.repeat
    runs: dict[str, list[dict]] = {"euroflow": [], "gigatoken": []}
    for i in range(repeat):
        order = ["euroflow", "gigatoken"] if i % 2 == 0 else ["gigatoken", "euroflow"]
        for tool in order:
            source = zst if tool == "euroflow" else jsonl
            runs[tool].append(run_tool(tool, source, tokenizer_dir, out / tool))
    identical = _same_files(out / "euroflow", out / "gigatoken")
    if not args.skip_baseline:
        runs["baseline"] = [run_tool("baseline", jsonl, tokenizer_dir, out / "baseline")]
        identical = identical and _same_files(out / "euroflow", out / "baseline")

    def median(tool: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[tool])

    keys = ("seconds", "cpu_s", "wall_s", "tokens_per_s", "peak_rss_mb")
    rows = {tool: {key: median(tool, key) for key in keys} for tool in runs}
    tokens = runs["euroflow"][0]["tokens"]
    docs = runs["euroflow"][0]["docs"]
    input_mb = jsonl.stat().st_size / 1e6
    print(f"input: {input_mb:.1f} MB JSONL ({zst.stat().st_size / 1e6:.1f} MB .jsonl.zst), {docs:,} documents, "
          f"{tokens:,} tokens, 32k byte-level BPE, {THREADS} cores; median of {repeat} (baseline: 1)")
    print(f"{'tool':44}  {'time s':>7}  {'CPU s':>7}  {'wall s':>7}  {'tokens/s':>12}  {'peak RSS MB':>11}")
    names = {"euroflow": "euroflow tokenize_shard (.jsonl.zst)", "gigatoken": "Megatron-LM gigatoken fast path (.jsonl)",
             "baseline": "Megatron-LM preprocess_data.py, 2 workers"}
    for tool, row in rows.items():
        print(f"{names[tool]:44}  {row['seconds']:7.2f}  {row['cpu_s']:7.2f}  {row['wall_s']:7.2f}  "
              f"{row['tokens_per_s']:12,.0f}  {row['peak_rss_mb']:11.0f}")
    ours = rows["euroflow"]["tokens_per_s"]
    figures = {
        "euroflow_tokens_per_s": round(ours),
        "gigatoken_tokens_per_s": round(rows["gigatoken"]["tokens_per_s"]),
        "baseline_tokens_per_s": round(rows["baseline"]["tokens_per_s"]) if "baseline" in rows else None,
        "speedup": round(ours / rows["baseline"]["tokens_per_s"], 2) if "baseline" in rows else None,
        "vs_gigatoken": round(ours / rows["gigatoken"]["tokens_per_s"], 3),
        "peak_rss_mb": round(rows["euroflow"]["peak_rss_mb"]),
        "gigatoken_peak_rss_mb": round(rows["gigatoken"]["peak_rss_mb"]),
        "baseline_peak_rss_mb": round(rows["baseline"]["peak_rss_mb"]) if "baseline" in rows else None,
        "seconds": {tool: round(row["seconds"], 3) for tool, row in rows.items()},
        "wall_s": {tool: round(row["wall_s"], 3) for tool, row in rows.items()},
        "cpu_s": {tool: round(row["cpu_s"], 3) for tool, row in rows.items()},
        "tokens_per_cpu_s": {tool: round(tokens / row["cpu_s"]) for tool, row in rows.items()},
        "runs_s": {tool: [round(r["seconds"], 3) for r in rs] for tool, rs in runs.items()},
        "backend": runs["euroflow"][0]["backend"],
        "tokens": tokens, "docs": docs, "input_mb": round(input_mb, 1), "threads": THREADS, "repeat": repeat,
        "identical": identical,
    }
    goals = [f"vs_gigatoken >= {GOALS['vs_gigatoken']}: {figures['vs_gigatoken']}",
             f"peak_rss_mb < {GOALS['peak_rss_mb']:.0f}: {figures['peak_rss_mb']}"]
    if figures["speedup"] is not None:
        goals.append(f"speedup >= {GOALS['speedup']:.0f}: {figures['speedup']}")
    print(f"euroflow/gigatoken {figures['vs_gigatoken']:.2f}x, euroflow/baseline {figures['speedup']}x; "
          f"outputs identical: {identical}; goals: {'; '.join(goals)}")
    print(json.dumps(figures))
    return 0 if identical else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200.0, help="JSONL input size (default 200)")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK),
                        help=f"input, tokenizer and outputs (default {DEFAULT_WORK})")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA), help="the multilingual data bundle (NTREX-128)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of euroflow and gigatoken, alternating (median)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 MB, one run each")
    parser.add_argument("--skip-baseline", action="store_true", help="leave out the (slow) preprocess_data.py baseline")
    parser.add_argument("--tool", choices=sorted(TOOLS), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tool:
        return _child(args)
    return compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
