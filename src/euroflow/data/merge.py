"""Merge one language's per-shard indexed datasets into one per split, without re-tokenizing.

The production blend has hundreds of shards per language; as many Megatron prefixes each keep about
six files open and memory-mapped, and training start-up grows with their number. After the per-shard
tokenize jobs (a failure still re-runs one shard), one cheap job per language concatenates them: the
blend then has one prefix per (language, split).

The result is byte for byte what Megatron-Core's ``IndexedDatasetBuilder`` writes after one
``add_index(prefix)`` per shard, in order, and ``finalize`` (tested against it). It is written here
rather than with ``add_index`` because that keeps every sequence length of the language in Python
lists (about 36 bytes a document: 36 GB for 10^9 documents) and computes the pointers in a Python
loop. Here each ``.idx`` section is streamed from memory-mapped inputs in chunks, and the ``.bin``
files are copied by the kernel (``copy_file_range``): memory is bounded by the chunk size, and at
most three files are open at a time, whatever the language's size. Outputs are written under
temporary names and renamed into place only when all are complete.
"""

from __future__ import annotations

import os
import shutil
import struct
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from euroflow.atomic import atomic_path
from euroflow.data.tokenize import _DTYPE_CODES, _INDEX_HEADER, index_header
from euroflow.errors import EuroflowError

# Megatron-Core's .idx layout (megatron.core.datasets.indexed_dataset._IndexWriter / _IndexReader):
# magic, version <Q, dtype code <B, sequence count <Q, document count <Q, then the three sections
INDEX_HEADER = _INDEX_HEADER
_HEADER_BYTES = len(INDEX_HEADER) + 8 + 1 + 8 + 8
DTYPES = {code: np.dtype(name).type for name, code in _DTYPE_CODES.items()}
CHUNK = 1 << 22  # entries of an index section read and written at a time (16-32 MB)


@dataclass(frozen=True)
class IndexHeader:
    prefix: str
    dtype_code: int
    sequences: int
    documents: int

    @property
    def itemsize(self) -> int:
        return np.dtype(DTYPES[self.dtype_code]).itemsize

    def section(self, name: str) -> tuple[int, type, int]:
        """(byte offset, dtype, count) of ``lengths``, ``pointers`` or ``documents`` in the ``.idx``."""
        n = self.sequences
        return {
            "lengths": (_HEADER_BYTES, np.int32, n),
            "pointers": (_HEADER_BYTES + 4 * n, np.int64, n),
            "documents": (_HEADER_BYTES + 12 * n, np.int64, self.documents),
        }[name]


def read_header(prefix: str | os.PathLike) -> IndexHeader:
    """The header of ``<prefix>.idx``, checked against the file's size; one line naming the file if not."""
    idx = Path(f"{prefix}.idx")
    try:
        with open(idx, "rb") as fh:
            head = fh.read(_HEADER_BYTES)
        size = idx.stat().st_size
    except OSError as exc:
        raise EuroflowError(f"{idx}: cannot read the index ({exc.strerror})") from None
    if len(head) < _HEADER_BYTES or head[: len(INDEX_HEADER)] != INDEX_HEADER:
        raise EuroflowError(f"{idx}: not a Megatron indexed dataset index (bad header); re-run the shard's tokenize job")
    version, code, sequences, documents = struct.unpack("<QBQQ", head[len(INDEX_HEADER):])
    if version != 1 or code not in DTYPES:
        raise EuroflowError(f"{idx}: unsupported index (version {version}, dtype code {code})")
    expected = _HEADER_BYTES + 12 * sequences + 8 * documents
    if size != expected:
        raise EuroflowError(f"{idx}: {size} bytes, but its header announces {expected} (truncated or multimodal); "
                            "re-run the shard's tokenize job")
    return IndexHeader(str(prefix), code, sequences, documents)


def _section(header: IndexHeader, name: str) -> np.ndarray:
    offset, dtype, count = header.section(name)
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(f"{header.prefix}.idx", dtype=dtype, mode="r", offset=offset, shape=(count,))


def _copy_bytes(source: str, target) -> None:
    """Append ``source`` to the open file ``target`` (in the kernel where it can)."""
    with open(source, "rb") as src:
        remaining = os.fstat(src.fileno()).st_size
        try:
            while remaining > 0:
                copied = os.copy_file_range(src.fileno(), target.fileno(), min(remaining, 1 << 30))
                if copied == 0:
                    break
                remaining -= copied
        except OSError:  # a file system without copy_file_range: copy through user space
            src.seek(os.fstat(src.fileno()).st_size - remaining)
            target.seek(0, os.SEEK_END)
            shutil.copyfileobj(src, target, 16 << 20)
            remaining = 0
    target.seek(0, os.SEEK_END)


def merge_datasets(prefixes: Sequence[str | os.PathLike], out_prefix: str | os.PathLike) -> dict[str, Any]:
    """Concatenate the indexed datasets ``prefixes`` (same token dtype) into ``<out_prefix>.bin/.idx``.

    Returns ``sequences``, ``documents`` (as Megatron counts them), ``tokens`` and ``dtype``.
    """
    headers = [read_header(p) for p in prefixes]
    if not headers:
        raise EuroflowError(f"{out_prefix}: nothing to merge (no input datasets)")
    codes = {h.dtype_code for h in headers}
    if len(codes) > 1:
        first = headers[0]
        other = next(h for h in headers if h.dtype_code != first.dtype_code)
        raise EuroflowError(
            f"{other.prefix}.idx: token dtype {np.dtype(DTYPES[other.dtype_code]).name}, but {first.prefix}.idx has "
            f"{np.dtype(DTYPES[first.dtype_code]).name}: the shards were tokenized with different tokenizers"
        )
    tokens_of = {}
    for header in headers:
        tokens = tokens_of[header.prefix] = int(_section(header, "lengths").sum(dtype=np.int64))
        bin_size = os.path.getsize(f"{header.prefix}.bin") if os.path.exists(f"{header.prefix}.bin") else None
        if bin_size != tokens * header.itemsize:
            raise EuroflowError(f"{header.prefix}.bin: {'missing' if bin_size is None else f'{bin_size} bytes'}, but its index "
                                f"counts {tokens * header.itemsize}; re-run the shard's tokenize job")
    code = codes.pop()
    itemsize = headers[0].itemsize
    sequences = sum(h.sequences for h in headers)
    documents = 1 + sum(max(h.documents - 1, 0) for h in headers)
    out_prefix = Path(out_prefix)
    total_tokens = sum(tokens_of.values())
    with ExitStack() as stack:
        # renamed in reverse order of entry: the .bin first, then the .idx that describes it
        tmp_idx = stack.enter_context(atomic_path(out_prefix.with_name(out_prefix.name + ".idx")))
        tmp_bin = stack.enter_context(atomic_path(out_prefix.with_name(out_prefix.name + ".bin")))
        with open(tmp_bin, "wb") as out:
            for header in headers:
                _copy_bytes(f"{header.prefix}.bin", out)
        with open(tmp_idx, "wb") as out:
            out.write(index_header(code, sequences, documents))
            for header in headers:  # sequence lengths, as they are
                lengths = _section(header, "lengths")
                for start in range(0, len(lengths), CHUNK):
                    out.write(np.ascontiguousarray(lengths[start:start + CHUNK]).tobytes())
            base = 0
            for header in headers:  # byte pointers into the concatenated .bin
                pointers = _section(header, "pointers")
                for start in range(0, len(pointers), CHUNK):
                    out.write((pointers[start:start + CHUNK] + np.int64(base)).tobytes())
                base += tokens_of[header.prefix] * itemsize
            out.write(np.zeros(1, dtype=np.int64).tobytes())  # document boundaries: the builder's leading 0 ...
            offset = 0
            for header in headers:  # ... then each input's, after its own leading 0, shifted by the sequences before it
                boundaries = _section(header, "documents")[1:]
                for start in range(0, len(boundaries), CHUNK):
                    out.write((boundaries[start:start + CHUNK] + np.int64(offset)).tobytes())
                offset += header.sequences
    return {"sequences": sequences, "documents": documents - 1, "tokens": total_tokens,
            "dtype": np.dtype(DTYPES[code]).name}


SPLITS = ("train", "valid")


def merge_language(lang: str, reports: Sequence[dict[str, Any]], out_prefixes: dict[str, str | os.PathLike],
                   report_paths: Sequence[str] | None = None,
                   shard_prefixes: Sequence[dict[str, str]] | None = None) -> dict[str, Any]:
    """One language's tokenized shard reports (``euroflow data tokenize``) -> one dataset per split.

    ``shard_prefixes`` (one ``{split: prefix}`` per report) says where the shards' datasets are now; a
    report records where they were written, which is wrong once the results tree has moved. Without it
    the reports' ``prefixes`` are used. Returns the language's report, shaped like a shard's
    (``prefixes``, ``docs``, ``tokens``, ``max_token_id``, ``dtype``) with ``shards`` (how many were
    merged) and their reports' paths."""
    if not reports:
        raise EuroflowError(f"merge: no tokenized shards for language {lang}")
    if shard_prefixes is not None and len(shard_prefixes) != len(reports):
        raise EuroflowError(f"merge {lang}: {len(shard_prefixes)} shard prefixes for {len(reports)} reports")
    where = shard_prefixes if shard_prefixes is not None else [r["prefixes"] for r in reports]
    merged: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        inputs = [w[split] for w in where]
        merged[split] = merge_datasets(inputs, out_prefixes[split])
        announced = sum(int(r["tokens"][split]) for r in reports)
        if merged[split]["tokens"] != announced:
            raise EuroflowError(f"merge {lang}: the {split} datasets hold {merged[split]['tokens']} tokens but their "
                                f"reports announce {announced}; re-run the language's tokenize jobs")
    ids = [r["max_token_id"] for r in reports if isinstance(r.get("max_token_id"), int)]
    return {
        "lang": lang,
        "shards": len(reports),
        "prefixes": {split: str(out_prefixes[split]) for split in SPLITS},
        "docs": {**{split: sum(int(r["docs"][split]) for r in reports) for split in SPLITS},
                 "total": sum(int(r["docs"]["total"]) for r in reports)},
        "tokens": {**{split: merged[split]["tokens"] for split in SPLITS}, "total": sum(m["tokens"] for m in merged.values())},
        "dropped": sum(int(r.get("dropped") or 0) for r in reports),
        "chars": sum(int(r.get("chars") or 0) for r in reports),
        "dtype": merged["train"]["dtype"],
        "vocab_size": reports[0].get("vocab_size"),
        "max_token_id": max(ids) if ids else None,
        "shard_reports": list(report_paths) if report_paths is not None else None,
    }
