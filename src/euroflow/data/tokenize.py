"""Tokenize a clean shard into a Megatron indexed dataset (``<prefix>.bin`` + ``<prefix>.idx``).

Each document becomes one sequence ``[bos_id] + ids + [eos_id]``, written with Megatron-Core's
``IndexedDatasetBuilder``; token dtype uint16 when the vocabulary has fewer than 65500 pieces, else int32.
Documents are encoded in batches by SentencePiece with several threads. The pair is written under
temporary names and renamed into place only when both are complete (the old ``.idx`` is removed first,
so a reader never sees a new ``.bin`` with an old index).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from euroflow.data.hplt import read_shard

UINT16_LIMIT = 65500
BATCH_DOCS = 512


def token_dtype(vocab_size: int) -> type[np.number]:
    return np.uint16 if vocab_size < UINT16_LIMIT else np.int32


def _batches(path: Path, size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for doc in read_shard(path):
        batch.append(doc["text"])
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize_shard(
    shard: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    out_prefix: str | os.PathLike,
    *,
    threads: int | None = None,
) -> dict[str, Any]:
    """Write ``<out_prefix>.bin``/``.idx`` for the documents of ``shard``; return counts and timing."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from euroflow.tokenizer.train import load_sentencepiece, read_meta

    shard, out_prefix = Path(shard), Path(out_prefix)
    meta = read_meta(tokenizer_dir)
    processor = load_sentencepiece(tokenizer_dir)
    vocab_size, bos, eos = meta["vocab_size"], meta["bos_id"], meta["eos_id"]
    dtype = token_dtype(vocab_size)
    threads = threads or os.cpu_count() or 1

    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    final_bin = out_prefix.with_name(out_prefix.name + ".bin")
    final_idx = out_prefix.with_name(out_prefix.name + ".idx")
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_prefix.name}.tmp-", dir=out_prefix.parent))
    docs = tokens = chars = 0
    started = time.perf_counter()
    try:
        builder = IndexedDatasetBuilder(str(tmp_dir / "data.bin"), dtype=dtype)
        for texts in _batches(shard, BATCH_DOCS):
            encoded = processor.encode(texts, num_threads=threads)
            for text, ids in zip(texts, encoded):
                sequence = np.empty(len(ids) + 2, dtype=dtype)
                sequence[0], sequence[-1] = bos, eos
                sequence[1:-1] = ids
                builder.add_document(sequence, [len(sequence)])
                docs += 1
                tokens += len(sequence)
                chars += len(text)
        builder.finalize(str(tmp_dir / "data.idx"))
        final_idx.unlink(missing_ok=True)
        os.replace(tmp_dir / "data.bin", final_bin)
        os.replace(tmp_dir / "data.idx", final_idx)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    seconds = time.perf_counter() - started
    return {
        "shard": str(shard),
        "prefix": str(out_prefix),
        "docs": docs,
        "tokens": tokens,
        "chars": chars,
        "dtype": np.dtype(dtype).name,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
    }


def read_documents(prefix: str | os.PathLike) -> list[np.ndarray]:
    """Every document of an indexed dataset as a token array (for checks and tests)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(prefix), mmap=True)
    return [np.array(dataset[i]) for i in range(len(dataset))]
