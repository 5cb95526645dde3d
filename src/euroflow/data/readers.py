"""Stream crawl shards of every supported format into one document model, skipping and counting bad lines.

Formats, chosen by file name:

- ``.jsonl.zst`` / ``.jsonl``: HPLT v2 and v3 (one JSON object per line). v2 fields used: ``text``, ``id``,
  ``lang`` (list of ISO 639-3 + script codes, first = document language), ``url`` (``u`` in some
  releases), ``doc_scores`` (list, first = the web-docs-scorer quality score), ``filter``, ``seg_langs``
  (language of each segment). v3 adds ``crawl_id``, ``cluster_size``, ``web-register``; they are kept in
  ``Document.meta``. Other fields are ignored.
- ``.parquet``: FineWeb-2 style rows (``text``, ``id``, ``url``, ``language`` (ISO 639-3),
  ``language_script``, ``language_score``, ``minhash_cluster_size``, ...), read one record batch at a time.

Memory is bounded whatever the shard size: JSON lines are decompressed in 64 KiB reads and parsed one
by one; parquet is read in batches of ``PARQUET_BATCH_ROWS`` rows.

Bad input policy (:class:`BadLines`): a line that is not valid UTF-8 or JSON, not an object, lacks
``text`` or has a field of the wrong type is skipped and recorded with its file and line number. When
more than ``max_fraction`` of a shard's lines are bad, the shard fails with a one-line error. A zstd
stream that is truncated or corrupt always fails the shard (its remaining documents are unknown). An
empty shard (an empty file, or no documents) is not an error: it yields nothing and is reported as empty,
with the warning of :func:`empty_shard_warning` (prepare, check-shard and the tokenizer's reader agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from euroflow.data.hplt import _raw_lines, json_type, not_a_shard, record_problem
from euroflow.errors import EuroflowError

FORMATS = ("jsonl.zst", "jsonl", "parquet")  # checked in this order: .jsonl.zst before .jsonl
PARQUET_BATCH_ROWS = 1024
BAD_LINE_EXAMPLES = 20  # bad lines listed in a shard report (all are counted)
PARQUET_COLUMNS = (
    "text", "id", "url", "language", "language_script", "language_score", "minhash_cluster_size", "dump",
)
V3_META_FIELDS = ("crawl_id", "cluster_size", "web-register", "collection", "ts")


@dataclass(slots=True)
class Document:
    text: str
    line: int  # 1-based line (JSON lines) or row (parquet) in its shard
    id: str | None = None
    lang: str | None = None  # ISO 639-3 + script, e.g. "deu_Latn"
    url: str | None = None
    doc_score: float | None = None  # HPLT doc_scores[0]
    filter: str | None = None  # HPLT filter label; "keep" for kept documents
    seg_langs: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class BadLines:
    """Counts a shard's bad lines and fails it beyond ``max_fraction`` of its lines."""

    def __init__(self, path: Path, max_fraction: float) -> None:
        self.path, self.max_fraction = path, max_fraction
        self.count = 0
        self.lines = 0
        self.examples: list[str] = []

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.examples) < BAD_LINE_EXAMPLES:
            self.examples.append(f"{self.path}:{line}: {reason}")
        # fail early on a shard that is garbage from the start, instead of reading gigabytes of it
        if self.count >= 1000 and self.count > self.max_fraction * max(self.lines, 1):
            self.fail()

    def fail(self) -> None:
        raise EuroflowError(
            f"{self.path}: {self.count} of {self.lines} lines are bad (more than the allowed fraction "
            f"{self.max_fraction:g}, data.max_bad_fraction); first: {self.examples[0]}"
        )

    def check(self) -> None:
        if self.count and self.count > self.max_fraction * self.lines:
            self.fail()

    def report(self) -> dict[str, Any]:
        return {"lines": self.lines, "bad_lines": self.count, "bad_line_examples": self.examples}


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _from_json_record(record: Any, line: int) -> Document | str:
    """A Document, or the reason the record is bad."""
    problem = record_problem(record)
    if problem:
        return problem
    text = record["text"]
    lang = _first(record.get("lang"))
    if lang is not None and not isinstance(lang, str):
        return f"field 'lang' must be a string or a list of strings, got {json_type(lang)}"
    score = _first(record.get("doc_scores"))
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        return f"field 'doc_scores' must be a list of numbers, got {json_type(score)} first"
    seg_langs = record.get("seg_langs")
    if seg_langs is not None and not (isinstance(seg_langs, list) and all(isinstance(s, str) for s in seg_langs)):
        return "field 'seg_langs' must be a list of strings"
    label = record.get("filter")
    if label is not None and not isinstance(label, str):
        return f"field 'filter' must be a string, got {json_type(label)}"
    doc_id = record.get("id")
    url = record.get("url", record.get("u"))
    return Document(
        text=text,
        line=line,
        id=None if doc_id is None else str(doc_id),
        lang=lang,
        url=url if isinstance(url, str) else None,
        doc_score=None if score is None else float(score),
        filter=label,
        seg_langs=seg_langs,
        meta={key: record[key] for key in V3_META_FIELDS if key in record},
    )


def _jsonl_lines(path: Path, lines_read: list[int]) -> Iterator[bytes]:
    if path.name.endswith(".zst"):
        if path.stat().st_size == 0:
            return
        yield from _raw_lines(path, lines_read)
        return
    with open(path, "rb") as fh:
        for raw in fh:
            yield raw.rstrip(b"\n")


def _read_jsonl(path: Path, bad: BadLines) -> Iterator[Document]:
    lines_read = [0]  # where a truncated or corrupt zstd stream is reported
    for raw in _jsonl_lines(path, lines_read):
        bad.lines += 1
        lines_read[0] = bad.lines
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = "invalid UTF-8" if "utf-8" in str(exc).lower() else f"malformed JSON: {exc}"
            bad.add(bad.lines, reason)
            continue
        doc = _from_json_record(record, bad.lines)
        if isinstance(doc, str):
            bad.add(bad.lines, doc)
            continue
        yield doc


def _read_parquet(path: Path, bad: BadLines) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EuroflowError(f"{path}: not a readable parquet file: {exc}") from None
    names = set(parquet.schema_arrow.names)
    if "text" not in names:
        raise EuroflowError(f"{path}: parquet file has no column 'text' (columns: {', '.join(sorted(names))})")
    if not pa.types.is_string(parquet.schema_arrow.field("text").type) and not pa.types.is_large_string(
        parquet.schema_arrow.field("text").type
    ):
        raise EuroflowError(f"{path}: column 'text' must be a string column, got {parquet.schema_arrow.field('text').type}")
    columns = [name for name in PARQUET_COLUMNS if name in names]
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            rows = batch.to_pydict()
            absent = [None] * batch.num_rows  # for the optional columns a file lacks
            ids, urls = rows.get("id", absent), rows.get("url", absent)
            langs, scripts = rows.get("language", absent), rows.get("language_script", absent)
            meta_keys = [key for key in ("language_score", "minhash_cluster_size", "dump") if key in rows]
            for i, text in enumerate(rows["text"]):
                bad.lines += 1
                if text is None:
                    bad.add(bad.lines, "row has a null 'text'")
                    continue
                lang, script = langs[i], scripts[i]
                yield Document(
                    text=text,
                    line=bad.lines,
                    id=ids[i],
                    lang=f"{lang}_{script}" if lang and script else lang,
                    url=urls[i],
                    meta={key: rows[key][i] for key in meta_keys},
                )
    except (pa.ArrowInvalid, OSError) as exc:
        raise EuroflowError(f"{path}: corrupt parquet data after row {bad.lines}: {exc}") from None


def shard_format(path: str | os.PathLike) -> str:
    """``jsonl.zst``, ``jsonl`` or ``parquet``: the file name's suffix, which is also its format's name."""
    name = Path(path).name
    for kind in FORMATS:
        if name.endswith(f".{kind}"):
            return kind
    raise EuroflowError(f"{path}: unknown shard format (expected .jsonl.zst, .jsonl or .parquet)")


def empty_shard_warning(path: str | os.PathLike, documents: int) -> str | None:
    """The one answer, everywhere, for a shard without documents: a per-shard warning (never an error:
    a language's other shards still count), naming the shard and what its size suggests."""
    if documents:
        return None
    size = os.path.getsize(path)
    why = "0 bytes: an interrupted download or copy?" if size == 0 else f"{size} bytes, but no lines"
    return f"{path}: empty shard, no documents ({why})"


def read_documents(path: str | os.PathLike, bad: BadLines) -> Iterator[Document]:
    """Yield the good documents of one shard in order, recording bad lines in ``bad``.

    Call ``bad.check()`` after the last document to apply the bad-fraction limit to the whole shard.
    """
    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: {not_a_shard(path)}")
    kind = shard_format(path)
    reader = _read_parquet if kind == "parquet" else _read_jsonl
    yield from reader(path, bad)
