"""Preparing crawl shards: readers for HPLT v2/v3 and parquet, counted filters, bad lines, manifests, statistics."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from euroflow.data import dedup
from euroflow.data.hplt import read_shard
from euroflow.data.manifest import read_manifest, write_manifest
from euroflow.data.ntrex import ntrex_documents
from euroflow.data.prepare import prepare_shard
from euroflow.data.readers import BadLines, read_documents
from euroflow.data.statistics import deduplicate_language
from euroflow.errors import EuroflowError

PARAMS = {"min_chars": 50, "max_chars": 5000, "min_doc_score": 5.0, "min_lang_agreement": 0.5, "max_bad_fraction": 0.2}
TEXT = "Ein ganz gewöhnlicher Satz über das Wetter in Berlin und anderswo. "


def v2(i: int, **fields) -> dict:
    doc = {"id": f"d{i}", "text": f"{i} {TEXT * 3}", "lang": ["deu_Latn"], "doc_scores": [8.0, 1.0], "filter": "keep",
           "seg_langs": ["deu_Latn"], "u": f"https://example.invalid/{i}"}
    return doc | fields


def zst(path, lines: list[bytes]):
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n"))
    return path


def prepare(tmp_path, shard, name="s", params=PARAMS):
    out = tmp_path / "prepared"
    return prepare_shard(shard, "de", out / f"{name}.jsonl.zst", out / f"{name}.sig.npz", out / f"{name}.lengths.npy",
                         out / f"{name}.report.json", params), out


def test_each_filter_counts_what_it_removes(tmp_path):
    docs = [
        v2(0),
        v2(1, filter="adult_ud"),
        v2(2, doc_scores=[2.0]),
        v2(3, lang=["eng_Latn"]),
        v2(4, seg_langs=["eng_Latn", "eng_Latn", "deu_Latn"]),
        v2(5, text="zu kurz"),
        v2(6, text=TEXT * 100),
        v2(7, text="Cafe\u0301 \x07" + TEXT),  # decomposed é and a BEL: NFC and control-character stripping
        {"id": "d8", "text": TEXT * 2},  # no HPLT metadata: kept, and counted as missing it
    ]
    shard = zst(tmp_path / "in.jsonl.zst", [orjson.dumps(d) for d in docs])
    report, out = prepare(tmp_path, shard)
    assert report["removed"] == {"hplt_filter": 1, "doc_score": 1, "language": 1, "lang_agreement": 1, "too_short": 1, "too_long": 1,
                                 "contaminated": 0}
    assert report["contamination"]["checked"] is False and report["contamination"]["action"] == "off"
    assert report["removed_by_hplt_filter_value"] == {"adult_ud": 1}
    assert report["modified"] == {"control_chars": 1, "nfc": 1} and report["control_chars_removed"] == 1
    assert report["missing"] == {"filter": 1, "doc_score": 1, "seg_langs": 1}
    assert report["docs_in"] == 9 and report["docs_out"] == 3 and report["bad_lines"] == 0
    kept = list(read_shard(out / "s.jsonl.zst"))
    assert [d["id"] for d in kept] == ["d0", "d7", "d8"] and [d["line"] for d in kept] == [1, 8, 9]
    assert kept[1]["text"].startswith("Café " + TEXT[:5]) and kept[0]["url"] == "https://example.invalid/0"
    lengths = np.load(out / "s.lengths.npy")
    assert lengths.tolist() == [[len(d["text"]), len(d["text"].encode())] for d in kept]
    exact, minhash, _ = dedup.read_signatures(out / "s.sig.npz")
    assert len(exact) == len(minhash) == 3
    assert json.loads((out / "s.report.json").read_text())["docs_out"] == 3


def test_control_characters_are_found_in_utf8_as_the_regex_finds_them():
    from euroflow.data.prepare import CONTROL_CHARS, _has_control_chars

    for code in [*range(0x3000), 0xFEFF, 0x1F600]:  # the ones it looks for are all below U+00A0
        for text in (chr(code), f"a{chr(code)}b", f"\u00e9{chr(code)}\u00a0"):
            assert _has_control_chars(text.encode("utf-8")) is bool(CONTROL_CHARS.search(text)), hex(code)


def test_hplt_v3_fields_and_parquet_give_the_same_documents(tmp_path):
    v3 = [orjson.dumps(v2(i, crawl_id="cc-2024-10", cluster_size=3, **{"web-register": {"NA": 0.9}})) for i in range(3)]
    docs = list(read_documents(zst(tmp_path / "v3.jsonl.zst", v3), BadLines(tmp_path, 0.0)))
    assert docs[0].meta == {"crawl_id": "cc-2024-10", "cluster_size": 3, "web-register": {"NA": 0.9}}
    table = pa.table({"text": [d.text for d in docs], "id": [d.id for d in docs], "language": ["deu"] * 3,
                      "language_script": ["Latn"] * 3, "language_score": [0.99] * 3})
    pq.write_table(table, tmp_path / "fw2.parquet", row_group_size=2)
    rows = list(read_documents(tmp_path / "fw2.parquet", BadLines(tmp_path, 0.0)))
    assert [(r.text, r.id, r.lang, r.line) for r in rows] == [(d.text, d.id, "deu_Latn", d.line) for d in docs]
    report, _ = prepare(tmp_path, tmp_path / "fw2.parquet", params={**PARAMS, "min_doc_score": None})
    assert report["format"] == "parquet" and report["docs_out"] == 3


def test_bad_lines_are_skipped_and_counted_with_file_and_line(tmp_path):
    lines = [orjson.dumps(v2(i)) for i in range(10)]
    lines[2] = b'{"id": "broken", "text": "no end'
    lines[5] = b'{"id": "x", "text": "caf\xe9"}'
    lines[7] = orjson.dumps({"id": "n", "text": 42})
    shard = zst(tmp_path / "in.jsonl.zst", lines)
    report, _ = prepare(tmp_path, shard, params={**PARAMS, "max_bad_fraction": 0.3})
    assert report["bad_lines"] == 3 and report["docs_in"] == 7 and report["lines"] == 10
    assert [e.split(": ", 1)[0] for e in report["bad_line_examples"]] == [f"{shard}:3", f"{shard}:6", f"{shard}:8"]
    assert "field 'text' must be a string, got number" in report["bad_line_examples"][2]
    with pytest.raises(EuroflowError, match=r"in\.jsonl\.zst: 3 of 10 lines are bad .*first: .*in\.jsonl\.zst:3: malformed JSON"):
        prepare(tmp_path, shard, name="strict", params={**PARAMS, "max_bad_fraction": 0.2})
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [f"s.{e}" for e in ("jsonl.zst", "lengths.npy", "report.json", "sig.npz")]


def test_empty_shard_is_reported_not_fatal(tmp_path):
    (tmp_path / "empty.jsonl.zst").write_bytes(b"")
    report, out = prepare(tmp_path, tmp_path / "empty.jsonl.zst")
    assert report["empty"] and report["docs_out"] == 0 and list(read_shard(out / "s.jsonl.zst")) == []
    warning = f"{tmp_path / 'empty.jsonl.zst'}: empty shard, no documents (0 bytes: an interrupted download or copy?)"
    assert report["warnings"] == [warning]
    check = subprocess.run([sys.executable, "-m", "euroflow.cli", "data", "check-shard", "--input", str(tmp_path / "empty.jsonl.zst")],
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr.strip() == f"euroflow: warning: {warning}"


def test_manifest_round_trip_and_errors(tmp_path):
    for code, names in (("deu_Latn", ["1", "2"]), ("ell_Grek", ["1"])):
        (tmp_path / "hplt" / code).mkdir(parents=True)
        for name in names:
            (tmp_path / "hplt" / code / f"{name}.jsonl.zst").touch()
    manifest = tmp_path / "m.tsv"
    assert write_manifest(tmp_path / "hplt", ["de", "el"], manifest) == 3
    listed = read_manifest(manifest, tmp_path / "hplt")
    assert {lang: list(shards) for lang, shards in listed.items()} == {"de": ["1", "2"], "el": ["1"]}
    assert listed["de"]["2"] == str(manifest.parent / "hplt" / "deu_Latn" / "2.jsonl.zst")
    manifest.write_text("de\thplt/deu_Latn/1.jsonl.zst\nxx\tfoo.jsonl.zst\n")
    with pytest.raises(EuroflowError, match=r"m\.tsv:2: .*'xx'"):
        read_manifest(manifest)


def test_language_statistics_after_cross_shard_dedup(tmp_path, data_root):
    docs = [orjson.dumps(d) for d in ntrex_documents(data_root, "de")[:40]]
    near = orjson.loads(docs[3])
    near["text"] = near["text"].replace(".", "!", 1)  # one character: a near duplicate in the other shard
    a = zst(tmp_path / "a.jsonl.zst", docs[:30])
    b = zst(tmp_path / "b.jsonl.zst", docs[20:40] + [orjson.dumps(near)])  # 10 exact duplicates of shard a
    reports = []
    for name, shard in (("a", a), ("b", b)):
        prepare(tmp_path, shard, name=name, params={"min_chars": 0})
        reports.append(tmp_path / "prepared" / f"{name}.report.json")
    data = {"min_chars": 0, "valid_fraction": 0.2, "dedup": "near"}
    stats = deduplicate_language(reports, "de", tmp_path / "de.npz", tmp_path / "de.json", data)
    assert stats["docs_in"] == 51 and stats["removed"]["exact_duplicate"] == 10 and stats["removed"]["near_duplicate"] == 1
    assert stats["docs_out"] == 40 and stats["dedup"]["exact_fraction"] == pytest.approx(10 / 51)
    assert stats["chars_out"] == sum(len(orjson.loads(d)["text"]) for d in docs)
    codes = dedup.read_assignment(tmp_path / "de.npz", "b")
    assert (codes[:10] == dedup.EXACT).all() and codes[-1] == dedup.NEAR
    assert 0 < stats["valid_docs"] < 40 and json.loads((tmp_path / "de.json").read_text()) == stats
