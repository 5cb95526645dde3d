"""Cleaning: NFC, HPLT filter, length limits and exact dedup, with exact counts."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from euroflow.data import cli
from euroflow.data.clean import clean_shards
from euroflow.data.hplt import read_shard, write_shard

BODY = "Ein ganz gewöhnlicher Satz über das Wetter in München. "


def _docs():
    nfd = unicodedata.normalize("NFD", "Café crème à Zürich. " * 5)
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    return [
        {"id": "1", "text": BODY * 3, "lang": ["deu_Latn"], "filter": "keep"},
        {"id": "2", "text": nfd, "lang": ["deu_Latn"], "filter": "keep"},  # kept, becomes NFC
        {"id": "3", "text": nfc, "lang": ["deu_Latn"], "filter": "keep"},  # duplicate of 2 after NFC
        {"id": "4", "text": BODY * 3, "lang": ["deu_Latn"], "filter": "keep"},  # exact duplicate of 1
        {"id": "5", "text": BODY * 4, "lang": ["deu_Latn"], "filter": "adult_ut1"},
        {"id": "6", "text": BODY * 5, "lang": ["deu_Latn"], "filter": "word_avg_len"},
        {"id": "7", "text": BODY * 6, "lang": ["deu_Latn"], "filter": "adult_ut1"},
        {"id": "8", "text": "zu kurz", "lang": ["deu_Latn"], "filter": "keep"},
        {"id": "9", "text": BODY * 40, "lang": ["deu_Latn"], "filter": "keep"},  # too long
        {"id": "10", "text": BODY * 7, "lang": ["deu_Latn"]},  # no filter field: not dropped by it
    ]


def test_counts_per_step(tmp_path):
    shard = tmp_path / "in.jsonl.zst"
    write_shard(shard, _docs())
    out, stats_path = tmp_path / "clean.jsonl.zst", tmp_path / "stats.json"
    stats = clean_shards([shard], out, stats_path, min_chars=50, max_chars=1000)
    kept = list(read_shard(out))
    assert [d["id"] for d in kept] == ["1", "2", "10"]
    assert stats["lang"] == "de"  # from the HPLT code deu_Latn
    assert stats["removed"] == {"hplt_filter": 3, "too_short": 1, "too_long": 1, "duplicate": 2}
    assert stats["removed_by_hplt_filter_value"] == {"adult_ut1": 2, "word_avg_len": 1}
    assert stats["nfc_changed_docs"] == 1 and stats["docs_without_filter_field"] == 1
    assert stats["docs_in"] == 10 and stats["docs_out"] == 3
    assert all(unicodedata.is_normalized("NFC", d["text"]) for d in kept)
    assert stats["chars_out"] == sum(len(d["text"]) for d in kept)
    assert stats["bytes_out"] == sum(len(d["text"].encode()) for d in kept)
    docs = _docs()
    assert stats["chars_in"] == sum(len(d["text"]) for d in docs)
    assert stats["bytes_in"] == sum(len(d["text"].encode()) for d in docs)
    assert json.loads(stats_path.read_text()) == stats


def test_dedup_none_and_several_inputs(tmp_path):
    a, b = tmp_path / "a.jsonl.zst", tmp_path / "b.jsonl.zst"
    write_shard(a, _docs()[:2])
    write_shard(b, _docs()[2:4])
    stats = clean_shards([a, b], tmp_path / "o.jsonl.zst", tmp_path / "s.json", lang="de", min_chars=50, dedup="none")
    assert stats["docs_out"] == 4 and stats["removed"]["duplicate"] == 0
    stats = clean_shards([a, b], tmp_path / "o.jsonl.zst", tmp_path / "s.json", lang="de", min_chars=50)
    assert stats["docs_out"] == 2 and stats["removed"]["duplicate"] == 2


def test_keep_filter_values_widen_what_is_kept(tmp_path):
    shard = tmp_path / "in.jsonl.zst"
    write_shard(shard, _docs())
    stats = clean_shards([shard], tmp_path / "o.jsonl.zst", tmp_path / "s.json", min_chars=50, max_chars=1000,
                         keep_filter_values=["keep", "adult_ut1"])
    assert stats["removed"]["hplt_filter"] == 1 and stats["docs_out"] == 5


def test_ntrex_clean_via_cli_with_config(tmp_path, data_root):
    raw, out, stats_path = tmp_path / "de.jsonl.zst", tmp_path / "clean" / "de.jsonl.zst", tmp_path / "de.json"
    assert cli.main(["ntrex-shard", "--data-root", str(data_root), "--lang", "de", "--out", str(raw)]) == 0
    config = str(Path(__file__).resolve().parents[2] / "workflow" / "configs" / "tiny.yaml")
    assert cli.main(["clean", "--input", str(raw), "--out", str(out), "--stats", str(stats_path), "--config", config]) == 0
    stats = json.loads(stats_path.read_text())
    # NTREX German has one line in decomposed form; NFC changes that document
    assert stats["docs_in"] == stats["docs_out"] == 123 and stats["nfc_changed_docs"] == 1
    assert stats["params"]["min_chars"] == 200
