"""The demo source: HPLT v2 style documents built from NTREX-128.

NTREX-128 gives 1997 news sentences per language, aligned line by line, and ``DOCUMENT_IDS.tsv``
names the document (123 of them, e.g. ``bbc.381790``) of each line. Consecutive lines of one document
become one HPLT-style document whose text is the lines joined with ``"\\n"``.

Fields and where they come from:

- real, from NTREX: ``id`` (``ntrex128/<docid>/<lang key>``), ``text``, ``lang`` (``[<HPLT code>]``,
  the language NTREX says the file is in), ``collection`` (``"ntrex128"``), and ``euroflow_source``
  (dataset, document id, language key, 1-based first/last line in the NTREX file).
- made up, because HPLT has them and NTREX does not: ``prob``, ``doc_scores``, ``url``, ``filter``,
  ``seg_langs``, ``ts``. They hold plausible values (professionally translated news: full language
  probability, top quality score, ``filter`` = ``"keep"``, one segment per line in the document's
  language, a URL under the reserved ``.invalid`` domain, WMT19's test-set year) so the HPLT code
  path is exercised, and each document lists them in ``euroflow_synthetic_fields``. Never read
  these fields as measurements.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from euroflow import languages
from euroflow.data.hplt import write_shard
from euroflow.errors import EuroflowError

NTREX_DIR = Path("parallel") / "ntrex128"
DOCUMENT_IDS = "DOCUMENT_IDS.tsv"
COLLECTION = "ntrex128"
SYNTHETIC_FIELDS = ["prob", "doc_scores", "url", "filter", "seg_langs", "ts"]
SYNTHETIC_TIMESTAMP = "2019-01-01T00:00:00Z"  # NTREX-128 translates the WMT19 news test set

_HOW_TO_SET = "set paths.data_root in the run config or the EUROFLOW_DATA environment variable"


def ntrex_file(data_root: str | os.PathLike, lang: str) -> Path:
    return Path(data_root) / NTREX_DIR / f"{lang}.txt"


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        root_note = "" if path.parent.is_dir() else f" (directory {path.parent} does not exist)"
        raise EuroflowError(f"{path}: {what} not found{root_note}; {_HOW_TO_SET}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise EuroflowError(f"{path}:{line}: invalid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _document_runs(doc_ids: list[str], ids_path: Path) -> list[tuple[str, int, int]]:
    """Group line indices into (docid, start, end) runs of consecutive equal ids; end is exclusive."""
    runs: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for index, raw in enumerate(doc_ids):
        docid = raw.split("\t")[0].strip()
        if not docid:
            raise EuroflowError(f"{ids_path}:{index + 1}: empty document id")
        if runs and runs[-1][0] == docid:
            runs[-1] = (docid, runs[-1][1], index + 1)
            continue
        if docid in seen:
            raise EuroflowError(f"{ids_path}:{index + 1}: document {docid} appears again after other documents")
        seen.add(docid)
        runs.append((docid, index, index + 1))
    return runs


def ntrex_documents(data_root: str | os.PathLike, lang: str) -> list[dict[str, Any]]:
    """All NTREX-128 documents of one language key, as HPLT v2 style records, in NTREX order."""
    language = languages.get(lang)
    root = Path(data_root)
    if not root.is_dir():
        raise EuroflowError(f"{root}: data root not found (NTREX-128 expected in {root / NTREX_DIR}); {_HOW_TO_SET}")
    ids_path = root / NTREX_DIR / DOCUMENT_IDS
    doc_ids = _read_lines(ids_path, "NTREX-128 document ids")
    text_path = ntrex_file(root, lang)
    lines = _read_lines(text_path, f"NTREX-128 text for {lang}")
    if len(lines) != len(doc_ids):
        raise EuroflowError(
            f"{text_path}: {len(lines)} lines, but {ids_path.name} has {len(doc_ids)}; the files must be aligned"
        )
    docs = []
    for docid, start, end in _document_runs(doc_ids, ids_path):
        segments = lines[start:end]
        docs.append(
            {
                "id": f"{COLLECTION}/{docid}/{lang}",
                "text": "\n".join(segments),
                "lang": [language.hplt],
                "prob": [1.0],
                "doc_scores": [10.0],
                "url": f"https://{docid.split('.')[0]}.invalid/newstest2019/{docid}",
                "filter": "keep",
                "seg_langs": [language.hplt] * len(segments),
                "ts": SYNTHETIC_TIMESTAMP,
                "collection": COLLECTION,
                "euroflow_source": {
                    "dataset": "NTREX-128",
                    "document_id": docid,
                    "language_key": lang,
                    "lines": [start + 1, end],
                },
                "euroflow_synthetic_fields": list(SYNTHETIC_FIELDS),
            }
        )
    return docs


def build_ntrex_shard(data_root: str | os.PathLike, lang: str, out_path: str | os.PathLike) -> dict[str, Any]:
    """Write the NTREX-128 documents of ``lang`` as one ``.jsonl.zst`` shard (atomically); return a summary."""
    docs = ntrex_documents(data_root, lang)
    write_shard(out_path, docs)
    return {
        "lang": lang,
        "hplt": languages.get(lang).hplt,
        "docs": len(docs),
        "lines": sum(len(d["seg_langs"]) for d in docs),
        "chars": sum(len(d["text"]) for d in docs),
        "out": str(out_path),
    }
