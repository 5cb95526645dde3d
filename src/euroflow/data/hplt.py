"""Read and write HPLT v2 style shards: one JSON document per line, zstd-compressed (``.jsonl.zst``).

Reading streams in bounded memory: the compressed file is fed to a zstd decompressor in small chunks,
split into lines as bytes, and each line is decoded and parsed on its own. Every problem is reported
as one line naming the file and line number. A stream that ends inside a zstd frame (a copy cut short)
is detected and reported as truncated rather than read as a shorter shard.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import zstandard

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError

READ_CHUNK = 1 << 16  # compressed bytes per read
# Compressed bytes per decompress call. One zstd block of 4 bytes can stand for 128 KiB, so a
# crafted stream could expand a whole read to ~2 GB in one call; a slice to at most ~32 MB.
# Slicing costs nothing measurable (1 KiB vs 64 KiB slices: same time on 67 MB of zstd).
DECODE_SLICE = 1 << 10
COMPRESSION_LEVEL = 3



def not_a_shard(path: Path) -> str:
    """Why ``path`` (which is no readable file) cannot be a shard, in a few words."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            return "a symlink loop" if exc.errno == errno.ELOOP else "a dangling symlink"
        return "a link to something that is not a file"
    return "not a file" if path.exists() else "shard not found"


def decompressed_blocks(
    path: Path, lines_so_far: list[int], *, first_block: int = 0, max_block: int = 0
) -> Iterator[bytes]:
    """Yield decompressed bytes of every zstd frame in ``path``; raise if the last frame is cut short.

    With ``first_block``, output is gathered into blocks of at least that many bytes, each next one twice
    as large up to ``max_block``; otherwise it is yielded after every ``DECODE_SLICE`` compressed bytes.
    Whatever was decompressed is yielded before a truncation is reported. ``lines_so_far`` is a
    one-element list the caller keeps updated, so errors can say where they hit.
    """
    dctx = zstandard.ZstdDecompressor()
    decoder = dctx.decompressobj()
    inside_frame = seen_any = False
    parts: list[bytes] = []
    size = 0
    target = first_block
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            seen_any = True
            view = memoryview(chunk)
            for start in range(0, len(view), DECODE_SLICE):
                piece = view[start : start + DECODE_SLICE]
                while piece:
                    try:
                        out = decoder.decompress(piece)
                    except zstandard.ZstdError as exc:
                        raise EuroflowError(f"{path}: corrupt zstd stream after line {lines_so_far[0]}: {exc}") from None
                    inside_frame = True
                    if out:
                        parts.append(out)
                        size += len(out)
                    if decoder.eof:  # frame complete; whatever follows starts the next frame
                        piece = decoder.unused_data
                        decoder = dctx.decompressobj()
                        inside_frame = False
                    else:
                        piece = b""
                if parts and size >= target:
                    yield b"".join(parts)
                    parts, size = [], 0
                    target = min(2 * target, max_block)
    if parts:  # before any error below, so that the lines it counts are all the complete ones
        yield b"".join(parts)
    if inside_frame:
        raise EuroflowError(f"{path}: truncated zstd stream after line {lines_so_far[0]}")


def _raw_lines(path: Path, lines_so_far: list[int]) -> Iterator[bytes]:
    """Yield complete lines (without the newline); a final line without newline only if the stream is whole."""
    pending = bytearray()
    for block in decompressed_blocks(path, lines_so_far):
        pending += block
        start = 0
        while (end := pending.find(b"\n", start)) != -1:
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
    # reached only when the stream ended on a frame boundary, so this last unterminated line is complete
    if pending:
        yield bytes(pending)


def _parse_line(path: Path, lineno: int, raw: bytes) -> dict[str, Any]:
    where = f"{path}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EuroflowError(f"{where}: invalid UTF-8 at byte {exc.start}") from None
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EuroflowError(f"{where}: malformed JSON: {exc.msg} at column {exc.colno}") from None
    problem = record_problem(doc)
    if problem:
        raise EuroflowError(f"{where}: {problem}")
    return doc


def record_problem(doc: Any) -> str | None:
    """What makes a parsed JSON line not a document (not an object, no string ``text``), or None."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    if "text" not in doc:
        return "missing field 'text'"
    if not isinstance(doc["text"], str):
        return f"field 'text' must be a string, got {json_type(doc['text'])}"
    try:
        doc["text"].encode("utf-8")
    except UnicodeEncodeError as exc:  # a JSON escape like \ud800 decodes to a lone surrogate
        return f"field 'text' has an unpaired surrogate at character {exc.start}"
    return None


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def read_shard(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the documents of one ``.jsonl.zst`` shard, in order; blank lines are skipped.

    Raises ``EuroflowError`` naming ``file:line`` for a malformed JSON line, invalid UTF-8, a line that
    is not an object, a missing or non-string ``text``; and naming the file for a truncated or corrupt
    zstd stream. Documents before the bad line have been yielded already: callers that write outputs
    must do so atomically (as every writer in this package does).
    """
    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: {not_a_shard(path)}")
    lines_so_far = [0]
    for raw in _raw_lines(path, lines_so_far):
        lines_so_far[0] += 1
        if not raw.strip():
            continue
        yield _parse_line(path, lines_so_far[0], raw)


def count_documents(path: str | os.PathLike) -> int:
    """Read a whole shard, checking every line; return its number of documents."""
    return sum(1 for _ in read_shard(path))


def write_shard(path: str | os.PathLike, docs: Iterable[dict[str, Any]]) -> int:
    """Write ``docs`` as one zstd frame of JSON lines to ``path``, atomically; return the number written.

    If ``docs`` raises part-way (for example a bad input shard being read lazily), no file is left.
    """
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).stream_writer(raw) as out:
            for doc in docs:
                if not isinstance(doc.get("text"), str):
                    raise EuroflowError(f"{path}: document {count + 1}: field 'text' must be a string")
                try:
                    line = json.dumps(doc, ensure_ascii=False).encode("utf-8")
                except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
                    raise EuroflowError(f"{path}: document {count + 1}: cannot be written as JSON: {exc}") from None
                out.write(line)
                out.write(b"\n")
                count += 1
    return count
