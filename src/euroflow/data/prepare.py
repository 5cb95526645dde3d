"""Prepare one crawl shard: filter its documents, normalize their text, sign them for deduplication.

One Snakemake job per shard. Each document goes through these steps in order and is counted by the
first filter that removes it (``report["removed"]``):

1. ``hplt_filter``: its HPLT ``filter`` label is not in ``keep_filter_values`` (no label: kept, counted
   in ``docs_without_filter_field``).
2. ``doc_score``: its ``doc_scores[0]`` is below ``min_doc_score`` (no score: kept, counted).
3. ``language``: its document language (``lang[0]``, or FineWeb-2 ``language`` + script) is not the
   shard's language.
4. ``lang_agreement``: fewer than ``min_lang_agreement`` of its ``seg_langs`` are the shard's language.
5. Control characters (C0 and C1, except tab, newline and carriage return) are stripped
   (``modified.control_chars``), then the text is put in Unicode NFC (``modified.nfc``).
6. ``too_short`` / ``too_long``: fewer than ``min_chars`` or more than ``max_chars`` characters.
7. ``contaminated``: it shares a word n-gram with an evaluation set of the language
   (:mod:`euroflow.data.contamination`; with ``decontamination.action: flag`` it is kept and counted).

The documents that pass step 6 go on in batches (``SIGNATURE_BATCH`` documents or about
``dedup.BATCH_BYTES`` of text): each batch is normalized once (:meth:`euroflow.data.dedup.WordBatch.of_texts`)
for both the decontamination check and the signatures.

Outputs, all written atomically (none exists after a failure): the kept documents as a slim
``.jsonl.zst`` (``id``, ``url``, ``text``, ``line`` = line in the input shard), their deduplication
signatures (:mod:`euroflow.data.dedup`), their character and byte lengths (``.npy``, for statistics after
deduplication), and a JSON report with every count and the bad lines (file and line number).
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import orjson
import zstandard

from euroflow import config, languages
from euroflow.atomic import atomic_path
from euroflow.data.hplt import COMPRESSION_LEVEL
from euroflow.data.readers import BadLines, Document, empty_shard_warning, read_documents, shard_format
from euroflow.data.spool import RowSpool
from euroflow.errors import EuroflowError

CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# the same characters found in a text's UTF-8, three times faster than the regex on the text: the ASCII ones
# are single bytes (never inside a longer character), the others (U+0080-U+009F) two bytes behind \xc2
_CONTROL_BYTES = bytes(c for c in range(128) if CONTROL_CHARS.match(chr(c)))
_WIDE_CONTROL = re.compile(b"\xc2[" + re.escape(bytes(c for c in range(128, 192) if CONTROL_CHARS.match(chr(c)))) + b"]")  # U+0080-U+00BF: c2 80-bf
SIGNATURE_BATCH = 1000
REMOVAL_STEPS = ("hplt_filter", "doc_score", "language", "lang_agreement", "too_short", "too_long", "contaminated")
FILTER_KEYS = (
    "min_chars", "max_chars", "keep_filter_values", "min_doc_score", "min_lang_agreement", "strip_control_chars",
    "max_bad_fraction", "dedup", "near_dedup", "decontamination",
)


def filter_params(data: Mapping[str, Any]) -> dict[str, Any]:
    """The filter settings from a config's ``data`` section, with the config schema's defaults for what it leaves out."""
    defaults = config.schema_defaults("data")
    params = {key: data.get(key, defaults[key]) for key in FILTER_KEYS}
    params["near_dedup"] = {**defaults["near_dedup"], **(data.get("near_dedup") or {})}
    params["decontamination"] = {**defaults["decontamination"], **(data.get("decontamination") or {})}
    return params


def _has_control_chars(encoded: bytes) -> bool:
    """Whether the UTF-8 ``encoded`` holds a character of ``CONTROL_CHARS``."""
    return len(encoded.translate(None, _CONTROL_BYTES)) != len(encoded) or (
        b"\xc2" in encoded and _WIDE_CONTROL.search(encoded) is not None)


def _agreement(seg_langs: list[str], code: str) -> float:
    return sum(1 for s in seg_langs if s == code) / len(seg_langs)


def _removal_step(doc: Document, code: str, params: Mapping[str, Any], counts: Counter) -> str | None:
    """The metadata filter that removes ``doc`` (steps 1-4), or None."""
    if doc.filter is None:
        counts["docs_without_filter_field"] += 1
    elif doc.filter not in params["keep_filter_values"]:
        counts[f"hplt_filter_value:{doc.filter}"] += 1
        return "hplt_filter"
    if params["min_doc_score"] is not None:
        if doc.doc_score is None:
            counts["docs_without_doc_score"] += 1
        elif doc.doc_score < params["min_doc_score"]:
            return "doc_score"
    if doc.lang is not None and doc.lang != code:
        return "language"
    if params["min_lang_agreement"] is not None:
        if not doc.seg_langs:
            counts["docs_without_seg_langs"] += 1
        elif _agreement(doc.seg_langs, code) < params["min_lang_agreement"]:
            return "lang_agreement"
    return None


def prepare_shard(
    shard: str | os.PathLike,
    lang: str,
    out_shard: str | os.PathLike,
    signatures: str | os.PathLike,
    lengths: str | os.PathLike,
    report_path: str | os.PathLike,
    params: Mapping[str, Any],
    contamination_index: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Filter ``shard`` (one language ``lang``) into ``out_shard``; write signatures, lengths and the report.

    With ``contamination_index`` (:mod:`euroflow.data.contamination`), each kept document is checked
    against the language's evaluation sets and removed or flagged as ``params["decontamination"]`` says."""
    from euroflow.data.contamination import EXAMPLES, Checker, set_names
    from euroflow.data.dedup import BATCH_BYTES, SignatureWriter, WordBatch

    started = time.perf_counter()
    shard = Path(shard)
    code = languages.get(lang).hplt
    params = filter_params(params)
    near = params["near_dedup"]
    bad = BadLines(shard, params["max_bad_fraction"])
    counts: Counter[str] = Counter()
    removed = dict.fromkeys(REMOVAL_STEPS, 0)
    sizes = {"docs_in": 0, "chars_in": 0, "bytes_in": 0, "docs_out": 0, "chars_out": 0, "bytes_out": 0}
    decontamination = params["decontamination"]
    checker = Checker(contamination_index) if contamination_index and decontamination["action"] in ("remove", "flag") else None
    if checker is not None and checker.ngram != decontamination["ngram"]:
        raise EuroflowError(f"{contamination_index}: built for {checker.ngram}-grams, but data.decontamination.ngram is "
                            f"{decontamination['ngram']}; re-run the language's contamination_index job")
    contaminated: Counter[str] = Counter()
    contaminated_docs: list[int] = []
    contaminated_examples: list[dict[str, Any]] = []

    with ExitStack() as stack:
        shard_tmp = stack.enter_context(atomic_path(out_shard))
        report_tmp = stack.enter_context(atomic_path(report_path))
        lengths_tmp = stack.enter_context(atomic_path(lengths))
        writer = stack.enter_context(
            SignatureWriter(signatures, num_perm=near["num_perm"], ngram=near["ngram"])
        )
        kept_lengths = RowSpool(np.int64, 2, lengths_tmp.parent)
        stack.callback(kept_lengths.close)
        raw = stack.enter_context(open(shard_tmp, "wb"))
        out = stack.enter_context(zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).stream_writer(raw))
        pending: list[tuple[Document, str, int]] = []  # a document, its cleaned text, the text's UTF-8 size
        pending_chars = 0

        def flush() -> None:
            """The batch's decontamination check, then its kept documents out with their signatures."""
            nonlocal pending_chars
            if not pending:
                return
            words = WordBatch.of_texts([text for _, text, _ in pending])  # normalized once, for both checks
            masks = checker.check(words) if checker else None
            keep, batch_lengths = np.ones(len(pending), dtype=bool), []
            for i, (doc, text, size) in enumerate(pending):
                if masks is not None and masks[i]:
                    names = set_names(int(masks[i]))
                    for name in names:
                        contaminated[name] += 1
                    contaminated_docs.append(int(masks[i]))
                    if len(contaminated_examples) < EXAMPLES:
                        contaminated_examples.append({"id": doc.id, "url": doc.url, "line": doc.line, "sets": names})
                    if decontamination["action"] == "remove":
                        removed["contaminated"] += 1
                        keep[i] = False
                        continue
                sizes["docs_out"] += 1
                sizes["chars_out"] += len(text)
                sizes["bytes_out"] += size
                batch_lengths.append((len(text), size))
                out.write(orjson.dumps({"id": doc.id, "url": doc.url, "line": doc.line, "text": text},
                                       option=orjson.OPT_APPEND_NEWLINE))
            writer.add_batch(words, keep)
            kept_lengths.add(np.array(batch_lengths, dtype=np.int64).reshape(-1, 2))
            pending.clear()
            pending_chars = 0

        for doc in read_documents(shard, bad):
            sizes["docs_in"] += 1
            sizes["chars_in"] += len(doc.text)
            encoded = doc.text.encode("utf-8")
            size = len(encoded)
            sizes["bytes_in"] += size
            step = _removal_step(doc, code, params, counts)
            if step is not None:
                removed[step] += 1
                continue
            text = doc.text
            if params["strip_control_chars"] and _has_control_chars(encoded):
                stripped, n = CONTROL_CHARS.subn("", text)
                if n:
                    counts["control_chars_docs"] += 1
                    counts["control_chars_removed"] += n
                    text = stripped
            if not text.isascii():
                normal = unicodedata.normalize("NFC", text)
                if normal != text:
                    counts["nfc_docs"] += 1
                    text = normal
            if len(text) < params["min_chars"]:
                removed["too_short"] += 1
                continue
            if len(text) > params["max_chars"]:
                removed["too_long"] += 1
                continue
            if text is not doc.text:
                size = len(text.encode("utf-8"))
            pending.append((doc, text, size))
            pending_chars += len(text)
            if len(pending) == SIGNATURE_BATCH or pending_chars >= BATCH_BYTES // 2:  # about BATCH_BYTES of UTF-8 in Europe
                flush()
        flush()
        bad.check()
        out.flush(zstandard.FLUSH_FRAME)
        with open(lengths_tmp, "wb") as fh:
            kept_lengths.write_npy(fh)
        report = {
            "shard": str(shard),
            "format": shard_format(shard),
            "lang": lang,
            "output": str(out_shard),
            "params": params,
            **sizes,
            "removed": removed,
            "removed_by_hplt_filter_value": {
                key.split(":", 1)[1]: n for key, n in sorted(counts.items()) if key.startswith("hplt_filter_value:")
            },
            "modified": {"control_chars": counts["control_chars_docs"], "nfc": counts["nfc_docs"]},
            "contamination": {
                "checked": checker is not None, "ngram": decontamination["ngram"],
                "action": decontamination["action"] if checker is not None else "off",
                "index": str(contamination_index) if checker is not None else None,
                "docs": len(contaminated_docs),
                "by_set": {name: contaminated[name] for name in (checker.sets if checker is not None else [])},
                "examples": contaminated_examples,
            },
            "control_chars_removed": counts["control_chars_removed"],
            "missing": {
                "filter": counts["docs_without_filter_field"],
                "doc_score": counts["docs_without_doc_score"],
                "seg_langs": counts["docs_without_seg_langs"],
            },
            "empty": sizes["docs_in"] == 0,
            "warnings": [w for w in [empty_shard_warning(shard, sizes["docs_in"] + bad.count)] if w],
            **bad.report(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        report_tmp.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return report
