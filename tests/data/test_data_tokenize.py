"""Tokenizing clean shards into Megatron indexed datasets, and decoding them back."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from euroflow.data import cli
from euroflow.data.clean import clean_shards
from euroflow.data.hplt import read_shard
from euroflow.data.ntrex import build_ntrex_shard
from euroflow.data.tokenize import read_documents, token_dtype, tokenize_shard
from euroflow.errors import EuroflowError
from euroflow.tokenizer.train import load_sentencepiece


def test_dtype_by_vocab_size():
    assert token_dtype(8000) is np.uint16 and token_dtype(65499) is np.uint16
    assert token_dtype(65500) is np.int32 and token_dtype(262144) is np.int32


@pytest.mark.parametrize("lang", ["ka", "de"])
def test_round_trip_decodes_to_clean_text(tmp_path, data_root, small_tokenizer, lang):
    raw, clean = tmp_path / "raw.jsonl.zst", tmp_path / "clean.jsonl.zst"
    build_ntrex_shard(data_root, lang, raw)
    clean_shards([raw], clean, tmp_path / "stats.json", min_chars=0)
    prefix = tmp_path / "indexed" / lang
    result = tokenize_shard(clean, small_tokenizer, prefix)
    texts = [d["text"] for d in read_shard(clean)]
    docs = read_documents(prefix)
    sp = load_sentencepiece(small_tokenizer)
    assert result["docs"] == len(docs) == len(texts) == 123
    assert result["tokens"] == sum(len(d) for d in docs)
    assert docs[0].dtype == np.uint16 and result["dtype"] == "uint16"
    for ids, text in zip(docs, texts):
        assert ids[0] == 1 and ids[-1] == 2
        assert 1 not in ids[1:-1] and 2 not in ids[1:-1]
        assert sp.decode(ids[1:-1].tolist()) == text
    assert sorted(p.name for p in prefix.parent.iterdir()) == [f"{lang}.bin", f"{lang}.idx"]


def test_bad_shard_leaves_no_dataset(tmp_path, small_tokenizer):
    shard = tmp_path / "bad.jsonl.zst"
    whole = zstandard.ZstdCompressor().compress(b'{"text": "ein Satz"}\n' * 2000)
    shard.write_bytes(whole[:-5])
    prefix = tmp_path / "out" / "de"
    with pytest.raises(EuroflowError, match=r"bad\.jsonl\.zst: truncated zstd stream after line \d+"):
        tokenize_shard(shard, small_tokenizer, prefix)
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_pairs_inputs_with_prefixes(tmp_path, data_root, small_tokenizer, capsys):
    shards = []
    for lang in ("en", "uk"):
        shards.append(tmp_path / f"{lang}.jsonl.zst")
        build_ntrex_shard(data_root, lang, shards[-1])
    prefixes = [str(tmp_path / "idx" / "en"), str(tmp_path / "idx" / "uk")]
    report = tmp_path / "report.json"
    code = cli.main(["tokenize", "--input", *map(str, shards), "--tokenizer", str(small_tokenizer),
                     "--out-prefix", *prefixes, "--report", str(report)])
    assert code == 0 and report.is_file()
    assert len(read_documents(prefixes[1])) == 123
    assert cli.main(["tokenize", "--input", str(shards[0]), "--tokenizer", str(small_tokenizer),
                     "--out-prefix", *prefixes]) == 1
    assert "one prefix per shard" in capsys.readouterr().err
