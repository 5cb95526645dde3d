"""Fertility/parity report on FLORES train+dev."""

from __future__ import annotations

import json

import pytest

from euroflow.data.flores import load_flores
from euroflow.tokenizer import cli
from euroflow.tokenizer.parity import parity_report
from euroflow.tokenizer.train import load_sentencepiece


def test_parity_numbers_for_a_few_languages(pipeline, data_root):
    report = parity_report(pipeline["tokenizer"], data_root, ["en", "de", "ka", "sr", "sr-Latn"])
    rows = report["languages"]
    assert report["splits"] == ["train", "dev"]
    assert all(row["sentences"] == 800 for row in rows.values())
    assert rows["en"]["parity"] == 1.0
    sp = load_sentencepiece(pipeline["tokenizer"])
    de = load_flores(data_root, "de", ["train", "dev"])
    tokens = sum(len(ids) for ids in sp.encode(de))
    assert rows["de"]["tokens"] == tokens
    assert rows["de"]["tokens_per_word"] == pytest.approx(tokens / sum(len(s.split()) for s in de))
    assert rows["de"]["chars_per_token"] == pytest.approx(sum(map(len, de)) / tokens)
    assert rows["de"]["parity"] == pytest.approx(tokens / rows["en"]["tokens"])
    assert rows["ka"]["parity"] > rows["de"]["parity"] > 1.0  # Georgian costs more tokens than German
    assert rows["sr-Latn"]["derived_by_transliteration"] and not rows["sr"]["derived_by_transliteration"]
    assert report["notes"] and "transliterated" in report["notes"][0]


def test_parity_cli_writes_json_and_markdown(pipeline, data_root, tmp_path):
    out_json, out_md = tmp_path / "parity.json", tmp_path / "parity.md"
    code = cli.main(["parity", "--tokenizer", str(pipeline["tokenizer"]), "--data-root", str(data_root),
                     "--languages", "el", "uk", "sr-Latn", "--out-json", str(out_json), "--out-md", str(out_md)])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert list(report["languages"]) == ["el", "uk", "sr-Latn"]
    md = out_md.read_text()
    assert "| el | 800 |" in md and "| sr-Latn † | 800 |" in md and "transliterated" in md


def test_parity_cli_missing_data_root(pipeline, tmp_path, capsys):
    code = cli.main(["parity", "--tokenizer", str(pipeline["tokenizer"]), "--data-root", str(tmp_path),
                     "--languages", "de", "--out-json", str(tmp_path / "p.json"), "--out-md", str(tmp_path / "p.md")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "en.jsonl.gz: FLORES file not found" in err
    assert not (tmp_path / "p.json").exists()
