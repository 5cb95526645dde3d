"""One language's deduplication job: assignments for its shards and the language's statistics.

Reads every prepared shard's report, signatures and lengths (named after the report:
``<shard>.report.json``, ``<shard>.sig.npz``, ``<shard>.lengths.npy``), deduplicates across the shards in
the given order (:func:`euroflow.data.dedup.dedup_language`) and writes the assignment file plus the
language's statistics: the shard reports summed, the deduplication counts and fractions, and the
documents, characters and bytes that remain (``docs_out``, ``chars_out``, ``bytes_out``: kept and not a
duplicate; train and valid together, with the valid share given separately).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import orjson

from euroflow import languages
from euroflow.atomic import atomic_path
from euroflow.data import dedup
from euroflow.data.prepare import REMOVAL_STEPS, filter_params
from euroflow.data.readers import BAD_LINE_EXAMPLES
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json

REPORT_SUFFIX = ".report.json"


def sibling(report: Path, ext: str) -> Path:
    return report.with_name(report.name.removesuffix(REPORT_SUFFIX) + f".{ext}")


def _shard_id(report: Path, lang_dir: Path | None) -> str:
    name = report.name.removesuffix(REPORT_SUFFIX)
    try:
        return (report.parent / name).relative_to(lang_dir).as_posix() if lang_dir is not None else name
    except ValueError:  # a report outside the run's layout: its file name
        return name


def _lengths(path: Path, expected: int) -> np.ndarray:
    try:
        lengths = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EuroflowError(f"{path}: cannot read document lengths: {exc}") from None
    if lengths.shape != (expected, 2):
        raise EuroflowError(f"{path}: lengths of {lengths.shape[0]} documents, but the shard report says {expected}")
    return lengths


def deduplicate_language(
    reports: Sequence[str | os.PathLike],
    lang: str,
    assignment_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    data: Mapping[str, Any],
    *,
    lang_dir: str | os.PathLike | None = None,
    pairs: Sequence[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Deduplicate one language's prepared shards; write assignments and statistics atomically.

    ``pairs`` are the band jobs' pair files (:mod:`euroflow.data.minhash`); without them the bands run
    here. ``data`` is the run config's ``data`` section. Shard ids in the assignment file are the report
    paths relative to ``lang_dir`` without ``.report.json`` (default: the file names).
    """
    languages.get(lang)
    params = filter_params(data)
    near = params["near_dedup"]
    reports = [Path(p) for p in reports]
    if not reports:
        raise EuroflowError(f"{stats_path}: no shard reports given for language {lang}")
    shard_reports = [read_json(p, "shard report") for p in reports]
    for path, report in zip(reports, shard_reports):
        if report.get("lang") != lang:
            raise EuroflowError(f"{path}: field 'lang' is {report.get('lang')!r}, expected {lang}")
    stream = dedup.dedup_stream(
        [sibling(p, "sig.npz") for p in reports],
        threshold=near["threshold"],
        num_perm=near["num_perm"],
        weights=tuple(near["lsh_weights"]),
        valid_fraction=float(data.get("valid_fraction", 0.0)),
        near=params["dedup"] == "near",
        pair_paths=pairs,
    )
    out = {"docs": 0, "chars": 0, "bytes": 0}
    valid = {"docs": 0, "chars": 0}
    dedup_report: dict[str, Any] = {}

    def counted_codes():
        """Each shard's codes on their way into the assignment file, counted with the shard's lengths."""
        shards = iter(zip(reports, shard_reports))
        for item in stream:
            if isinstance(item, dict):  # the stream's last item
                dedup_report.update(item)
                continue
            path, report = next(shards)
            lengths = _lengths(sibling(path, "lengths.npy"), report["docs_out"])
            if len(item) != len(lengths):
                raise EuroflowError(f"{sibling(path, 'sig.npz')}: {len(item)} signatures, but the shard report says {len(lengths)} documents")
            kept = item < dedup.EXACT
            out["docs"] += int(kept.sum())
            out["chars"] += int(lengths[kept, 0].sum())
            out["bytes"] += int(lengths[kept, 1].sum())
            valid["docs"] += int((item == dedup.VALID).sum())
            valid["chars"] += int(lengths[item == dedup.VALID, 0].sum())
            yield item

    lang_dir = Path(lang_dir) if lang_dir is not None else None
    names = [_shard_id(p, lang_dir) for p in reports]
    with atomic_path(stats_path) as tmp:
        dedup.write_assignments(assignment_path, counted_codes(), names)
        stats = _statistics(lang, params, data, shard_reports, out, valid, dedup_report)
        tmp.write_bytes(orjson.dumps(stats, option=orjson.OPT_INDENT_2) + b"\n")
    return stats


def _statistics(lang, params, data, shard_reports, out, valid, dedup_report) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r[key]) for r in shard_reports)

    def summed(key: str) -> dict[str, int]:
        counter: Counter[str] = Counter()
        for r in shard_reports:
            counter.update(r.get(key, {}))
        return dict(sorted(counter.items()))

    removed = {step: sum(int(r["removed"].get(step, 0)) for r in shard_reports) for step in REMOVAL_STEPS}
    removed["exact_duplicate"] = dedup_report["exact_duplicates"]
    removed["near_duplicate"] = dedup_report["near_duplicates"]
    stats = {
        "lang": lang,
        "inputs": [r["shard"] for r in shard_reports],
        "shards": len(shard_reports),
        "empty_shards": [r["shard"] for r in shard_reports if r.get("empty")],
        "params": {**params, "valid_fraction": data.get("valid_fraction", 0.0)},
        "docs_in": total("docs_in"),
        "chars_in": total("chars_in"),
        "bytes_in": total("bytes_in"),
        "lines": total("lines"),
        "bad_lines": total("bad_lines"),
        "bad_line_examples": [e for r in shard_reports for e in r.get("bad_line_examples", [])][:BAD_LINE_EXAMPLES],
        "docs_filtered": total("docs_out"),
        "docs_out": out["docs"],
        "chars_out": out["chars"],
        "bytes_out": out["bytes"],
        "valid_docs": valid["docs"],
        "valid_chars": valid["chars"],
        "removed": removed,
        "removed_by_hplt_filter_value": summed("removed_by_hplt_filter_value"),
        "modified": summed("modified"),
        "contamination": _contamination(shard_reports),
        "dedup": {key: value for key, value in dedup_report.items() if key != "shards"},
    }
    return stats


def _contamination(shard_reports) -> dict[str, Any]:
    """The shards' decontamination summed: documents per evaluation set, and the first examples."""
    from euroflow.data.contamination import EXAMPLES

    found = [r.get("contamination") or {} for r in shard_reports]
    by_set: dict[str, int] = {}
    for f in found:  # every set checked, zeros included: "FLORES: 0 documents" is an answer
        for name, n in (f.get("by_set") or {}).items():
            by_set[name] = by_set.get(name, 0) + int(n)
    checked = bool(found) and all(f.get("checked") for f in found)
    return {
        "checked": checked,
        "ngram": found[0].get("ngram") if found else None,
        "action": found[0].get("action") if checked else "off",
        "docs": sum(int(f.get("docs", 0)) for f in found),
        "by_set": by_set,
        "examples": [e for f in found for e in f.get("examples", [])][:EXAMPLES],
    }


def read_stats(path: str | os.PathLike) -> dict[str, Any]:
    """Load a language's statistics file, checking the fields sampling needs."""
    path = Path(path)
    stats = read_json(path, "statistics file")
    for key in ("lang", "docs_out", "chars_out"):
        if key not in stats:
            raise EuroflowError(f"{path}: missing field '{key}'")
    languages.get(stats["lang"])
    return stats
