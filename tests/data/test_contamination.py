"""Decontamination: FLORES and Belebele text planted in a training shard is found, removed (or flagged) and counted."""

from __future__ import annotations

import gzip
import json

import numpy as np
import orjson
import pytest
import zstandard

from euroflow.data.cli import main
from euroflow.data.contamination import Checker, build_index, evaluation_texts, write_index
from euroflow.data.dedup import exact_key, minhash_signatures, normalize, read_signatures
from euroflow.data.flores import SPLITS, load_flores
from euroflow.data.ntrex import ntrex_documents
from euroflow.data import prepare
from euroflow.data.prepare import prepare_shard
from euroflow.data.statistics import deduplicate_language
from euroflow.errors import EuroflowError

PARAMS = {"min_chars": 50, "max_chars": 100000}


def long_sentences(texts, words=20):
    return [t for t in texts if len(t.split()) >= words]


@pytest.fixture(scope="module")
def planted(data_root, tmp_path_factory):
    """A German shard of NTREX documents with FLORES and Belebele text planted in three of them."""
    tmp = tmp_path_factory.mktemp("planted")
    with gzip.open(data_root / "mc" / "belebele" / "de.jsonl.gz", "rt", encoding="utf-8") as fh:
        passages = [json.loads(line)["context"] for line in fh]
    passage, belebele = passages[0], normalize(" ".join(passages))
    # FLORES sentences that no Belebele passage has (most of them are in one)
    flores = [s for s in long_sentences(load_flores(data_root, "de", ["test"])) if normalize(s)[:80] not in belebele]
    docs = ntrex_documents(data_root, "de")[:40]
    docs[5]["text"] += " " + flores[0]
    docs[17]["text"] = docs[17]["text"][:300] + " " + flores[1].upper().replace(" ", "  ") + " " + docs[17]["text"][300:]
    docs[30]["text"] += "\n" + passage
    shard = tmp / "de.jsonl.zst"
    shard.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(orjson.dumps(d) for d in docs) + b"\n"))
    index = tmp / "de.contamination.npz"
    assert main(["contamination-index", "--data-root", str(data_root), "--lang", "de", "--tasks", "belebele", "exams",
                 "--ngram", "13", "--out", str(index)]) == 0
    return shard, index, [docs[i]["id"] for i in (5, 17, 30)]


def run(tmp_path, shard, index, action="remove", name="s"):
    out = tmp_path / "prepared"
    params = {**PARAMS, "decontamination": {"ngram": 13, "action": action}}
    report = prepare_shard(shard, "de", out / f"{name}.jsonl.zst", out / f"{name}.sig.npz", out / f"{name}.lengths.npy",
                           out / f"{name}.report.json", params, contamination_index=index)
    return report, out


@pytest.mark.parametrize("batch", [1000, 7])  # one batch, and removals in several
def test_planted_flores_and_belebele_text_is_removed_and_counted(tmp_path, planted, monkeypatch, batch):
    monkeypatch.setattr(prepare, "SIGNATURE_BATCH", batch)
    shard, index, ids = planted
    report, out = run(tmp_path, shard, index)
    found = report["contamination"]
    assert found["checked"] and found["action"] == "remove" and found["docs"] == 3
    assert found["by_set"] == {"flores": 3, "belebele": 1, "exams": 0}  # Belebele's passages are FLORES sentences too
    assert [e["id"] for e in found["examples"]] == ids and found["examples"][2]["sets"] == ["flores", "belebele"]
    assert report["removed"]["contaminated"] == 3 and report["docs_out"] == 37
    kept = [orjson.loads(line)["id"] for line in zstandard.ZstdDecompressor().stream_reader(
        open(out / "s.jsonl.zst", "rb")).read().splitlines()]
    assert len(kept) == 37 and not set(ids) & set(kept)
    exact, minhash, _ = read_signatures(out / "s.sig.npz")  # one row per kept document, the removed ones left out
    kept_texts = [orjson.loads(line)["text"] for line in zstandard.ZstdDecompressor().stream_reader(
        open(out / "s.jsonl.zst", "rb")).read().splitlines()]
    np.testing.assert_array_equal(minhash, minhash_signatures(kept_texts))
    assert [bytes(row) for row in exact] == [exact_key(text) for text in kept_texts]
    stats = deduplicate_language([out / "s.report.json"], "de", tmp_path / "de.npz", tmp_path / "de.json", PARAMS)
    assert stats["contamination"]["by_set"] == {"flores": 3, "belebele": 1, "exams": 0} and stats["removed"]["contaminated"] == 3
    assert json.loads((tmp_path / "de.json").read_text())["contamination"]["docs"] == 3


def test_flagged_documents_are_kept_and_listed(tmp_path, planted):
    shard, index, ids = planted
    report, out = run(tmp_path, shard, index, action="flag")
    assert report["docs_out"] == 40 and report["removed"]["contaminated"] == 0
    assert report["contamination"]["docs"] == 3 and [e["id"] for e in report["contamination"]["examples"]] == ids
    report, _ = run(tmp_path, shard, index, action="off", name="off")
    assert report["contamination"] == {**report["contamination"], "checked": False, "docs": 0, "action": "off"}


def test_the_index_has_every_evaluation_ngram_and_counts_the_short_texts(data_root):
    texts = evaluation_texts(data_root, "de", ["belebele", "exams", "xcopa"])
    assert sorted(texts) == ["belebele", "exams", "flores"]  # no XCOPA in German
    assert len(texts["flores"]) == len(load_flores(data_root, "de", SPLITS))
    hashes, masks, summary = build_index(texts, 13)
    assert (np.diff(hashes.astype(np.float64)) > 0).all() and masks.min() >= 1
    assert summary["flores"]["unchecked"] > 0 and summary["flores"]["texts"] == len(texts["flores"])
    short = [t for t in texts["flores"] if len(normalize(t).split()) < 13]
    assert summary["flores"]["unchecked"] == len(short)


def test_a_damaged_or_mismatched_index_says_so(tmp_path, planted):
    shard, index, _ = planted
    bad = tmp_path / "bad.npz"
    bad.write_text("no")
    with pytest.raises(EuroflowError, match="bad.npz: not a readable decontamination index"):
        Checker(bad)
    other = tmp_path / "eight.npz"
    write_index(other, *build_index({"flores": ["ein zwei drei vier fünf sechs sieben acht neun"]}, 8)[:2], {"ngram": 8})
    with pytest.raises(EuroflowError, match="eight.npz: built for 8-grams, but data.decontamination.ngram is 13"):
        run(tmp_path, shard, other)


def test_evaluation_text_is_cleaned_as_training_text_is(tmp_path):
    """A FLORES sentence stored decomposed (NFD) or with a control character still matches its training copy."""
    import unicodedata

    sentence = "Le café est très bon et le thé aussi, disait-il hier soir à la terrasse du petit restaurant"
    index = tmp_path / "fr.npz"
    write_index(index, *build_index({"flores": [unicodedata.normalize("NFD", sentence) + "\x07"]}, 13)[:2], {"ngram": 13})
    assert Checker(index).check([normalize(unicodedata.normalize("NFC", "Er sagte: " + sentence)).encode()]).tolist() == [1]
