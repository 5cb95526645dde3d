"""Clean the shards of one language into one clean shard plus a statistics file.

Per document, in this order: Unicode NFC on ``text``; drop it if its HPLT ``filter`` value is not
kept; drop it if it is shorter than ``min_chars`` or longer than ``max_chars`` characters (after
NFC); drop it if its NFC text is an exact duplicate of an earlier kept document (by hash).
Documents without a ``filter`` field are not dropped by the filter step (they are counted).
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from euroflow import languages
from euroflow.atomic import atomic_path
from euroflow.data.hplt import read_shard, write_shard
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json


def _text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _lang_of(doc: dict[str, Any], where: str) -> str:
    codes = doc.get("lang")
    code = codes[0] if isinstance(codes, list) and codes else codes
    if not isinstance(code, str):
        raise EuroflowError(f"{where}: cannot tell the language: no 'lang' field; pass the language explicitly")
    try:
        return languages.by_hplt_code(code).key
    except EuroflowError as exc:
        raise EuroflowError(f"{where}: field 'lang': {exc}") from None


def clean_shards(
    inputs: Iterable[str | os.PathLike],
    out_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    *,
    lang: str | None = None,
    min_chars: int = 200,
    max_chars: int = 1_000_000,
    keep_filter_values: Iterable[str] = ("keep",),
    dedup: str = "exact",
) -> dict[str, Any]:
    """Clean ``inputs`` (shards of one language) into ``out_path``; write statistics JSON to ``stats_path``.

    ``lang`` is the language key; if omitted it is taken from the first document's ``lang`` field
    (HPLT code). Both outputs are written atomically: on any bad input neither exists afterwards.
    Returns the statistics dict.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise EuroflowError(f"{out_path}: no input shards given")
    if dedup not in {"exact", "none"}:
        raise EuroflowError(f"data.dedup: unknown value {dedup!r} (exact or none)")
    if min_chars > max_chars:
        raise EuroflowError(f"data.min_chars: {min_chars} is larger than data.max_chars {max_chars}")
    keep = set(keep_filter_values)
    if lang is not None:
        languages.get(lang)
    stats: dict[str, Any] = {
        "lang": lang,
        "inputs": [str(p) for p in inputs],
        "output": str(out_path),
        "params": {
            "min_chars": min_chars,
            "max_chars": max_chars,
            "keep_filter_values": sorted(keep),
            "dedup": dedup,
            "normalization": "NFC",
        },
        "docs_in": 0, "bytes_in": 0, "chars_in": 0,
        "docs_out": 0, "bytes_out": 0, "chars_out": 0,
        "nfc_changed_docs": 0,
        "docs_without_filter_field": 0,
        "removed": {"hplt_filter": 0, "too_short": 0, "too_long": 0, "duplicate": 0},
        "removed_by_hplt_filter_value": {},
    }
    by_filter_value: Counter[str] = Counter()
    seen: set[bytes] = set()

    def cleaned() -> Iterator[dict[str, Any]]:
        for path in inputs:
            for doc in read_shard(path):
                if stats["lang"] is None:
                    stats["lang"] = _lang_of(doc, str(path))
                text = doc["text"]
                stats["docs_in"] += 1
                stats["chars_in"] += len(text)
                stats["bytes_in"] += len(text.encode("utf-8"))
                normal = unicodedata.normalize("NFC", text)
                if normal != text:
                    stats["nfc_changed_docs"] += 1
                if "filter" not in doc:
                    stats["docs_without_filter_field"] += 1
                elif doc["filter"] not in keep:
                    stats["removed"]["hplt_filter"] += 1
                    by_filter_value[str(doc["filter"])] += 1
                    continue
                if len(normal) < min_chars:
                    stats["removed"]["too_short"] += 1
                    continue
                if len(normal) > max_chars:
                    stats["removed"]["too_long"] += 1
                    continue
                if dedup == "exact":
                    digest = _text_hash(normal)
                    if digest in seen:
                        stats["removed"]["duplicate"] += 1
                        continue
                    seen.add(digest)
                stats["docs_out"] += 1
                stats["chars_out"] += len(normal)
                stats["bytes_out"] += len(normal.encode("utf-8"))
                yield {**doc, "text": normal}
        if stats["lang"] is None:
            raise EuroflowError(f"{inputs[0]}: no documents, so the language is unknown; pass it explicitly")

    # both outputs are renamed into place only after both are complete
    with atomic_path(out_path) as shard_tmp, atomic_path(stats_path) as stats_tmp:
        write_shard(shard_tmp, cleaned())
        stats["removed_by_hplt_filter_value"] = dict(sorted(by_filter_value.items()))
        stats_tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def clean_with_config(
    inputs: Iterable[str | os.PathLike],
    out_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    config: dict[str, Any],
    *,
    lang: str | None = None,
) -> dict[str, Any]:
    """``clean_shards`` with the ``data`` section of a loaded run config."""
    data = config["data"]
    return clean_shards(
        inputs,
        out_path,
        stats_path,
        lang=lang,
        min_chars=data["min_chars"],
        max_chars=data["max_chars"],
        keep_filter_values=data["keep_filter_values"],
        dedup=data["dedup"],
    )


def read_stats(path: str | os.PathLike) -> dict[str, Any]:
    """Load a statistics file written by ``clean_shards``, checking the fields sampling needs."""
    path = Path(path)
    stats = read_json(path, "statistics file")
    for key in ("lang", "docs_out", "chars_out"):
        if key not in stats:
            raise EuroflowError(f"{path}: missing field '{key}'")
    languages.get(stats["lang"])
    return stats
