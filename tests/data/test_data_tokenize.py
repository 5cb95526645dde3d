"""Tokenizing shards into Megatron indexed datasets per split, and decoding them back."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zstandard

from euroflow.data import cli, hplt
from euroflow.data import tokenize as tok
from euroflow.data.hplt import read_shard, write_shard
from euroflow.data.ntrex import build_ntrex_shard
from euroflow.data.tokenize import read_documents, token_dtype, tokenize_shard
from euroflow.errors import EuroflowError
from euroflow.tokenizer.train import load_sentencepiece

TRICKY = [
    "", " ", "  two leading spaces", "trailing  ", "a  b   c", "\n", "x\n\ny", "1234567 3.14",
    "literal <s> and </s> and <unk> in text", "emoji 😀🙂", "\t tab", "中文字符", "nul \x00 byte",
    "e\u0301 combining", "ﬁ ligature", "\r\n crlf", "▁ already a meta space", "<0x41>",
]


def _write_zst(path, lines: list[bytes]) -> None:
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines)))


def _shard(tmp_path, data_root, lang="de", name="shard.jsonl.zst"):
    path = tmp_path / name
    build_ntrex_shard(data_root, lang, path)
    return path


def _megatron_bytes(tmp_path, docs: list[list[int]], dtype) -> tuple[bytes, bytes]:
    """What Megatron-Core's IndexedDatasetBuilder writes for these documents."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = tmp_path / "megatron-ref"
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for doc in docs:
        builder.add_document(np.array(doc, dtype=dtype), [len(doc)])
    builder.finalize(f"{prefix}.idx")
    return (tmp_path / "megatron-ref.bin").read_bytes(), (tmp_path / "megatron-ref.idx").read_bytes()


def test_dtype_by_vocab_size():
    assert token_dtype(8000) is np.uint16 and token_dtype(65499) is np.uint16
    assert token_dtype(65500) is np.int32 and token_dtype(262144) is np.int32


@pytest.mark.parametrize("lang", ["ka", "de"])
def test_round_trip_decodes_to_the_text(tmp_path, data_root, small_tokenizer, lang):
    shard = _shard(tmp_path, data_root, lang)
    prefix = tmp_path / "indexed" / lang
    result = tokenize_shard(shard, small_tokenizer, prefix)
    texts = [d["text"] for d in read_shard(shard)]
    docs = read_documents(prefix)
    sp = load_sentencepiece(small_tokenizer)
    assert result["docs"] == {"train": 123, "total": 123} and len(docs) == len(texts) == 123
    assert result["tokens"]["train"] == result["tokens"]["total"] == sum(len(d) for d in docs)
    assert result["chars"] == sum(len(t) for t in texts) and result["dropped"] == 0
    assert result["backend"] == "gigatoken" and result["dtype"] == "uint16" and docs[0].dtype == np.uint16
    for ids, text in zip(docs, texts):
        assert ids[0] == 1 and ids[-1] == 2
        assert 1 not in ids[1:-1] and 2 not in ids[1:-1]
        assert sp.decode(ids[1:-1].tolist()) == text
    assert sorted(p.name for p in prefix.parent.iterdir()) == [f"{lang}.bin", f"{lang}.idx"]


def test_exactly_sentencepiece_and_megatron_bytes(tmp_path, data_root, small_tokenizer):
    """Every document (special-token strings inside text included, after the verified first 64) is
    [bos] + SentencePiece's ids + [eos], in the bytes IndexedDatasetBuilder writes."""
    texts = [d["text"] for d in read_shard(_shard(tmp_path, data_root, "el"))][:70] + TRICKY
    shard = tmp_path / "tricky.jsonl.zst"
    write_shard(shard, [{"text": t} for t in texts])
    result = tokenize_shard(shard, small_tokenizer, tmp_path / "out" / "x")
    sp = load_sentencepiece(small_tokenizer)
    expected = [[1, *ids, 2] for ids in sp.encode(texts)]
    assert result["backend"] == "gigatoken"
    assert [d.tolist() for d in read_documents(tmp_path / "out" / "x")] == expected
    ref_bin, ref_idx = _megatron_bytes(tmp_path, expected, np.uint16)
    assert (tmp_path / "out" / "x.bin").read_bytes() == ref_bin
    assert (tmp_path / "out" / "x.idx").read_bytes() == ref_idx


def test_splits_by_assignment_with_empty_split(tmp_path, data_root, small_tokenizer):
    shard = _shard(tmp_path, data_root, "uk")
    texts = [d["text"] for d in read_shard(shard)]
    codes = np.zeros(len(texts), dtype=np.int8)
    codes[5:15] = 1
    codes[20:30] = 2
    codes[40] = 3
    prefixes = {"train": tmp_path / "t" / "0001.train", "valid": tmp_path / "t" / "0001.valid"}
    result = tokenize_shard(shard, small_tokenizer, prefixes, assignment=codes)
    assert result["docs"] == {"train": 102, "valid": 10, "total": 112} and result["dropped"] == 11
    assert result["tokens"]["total"] == result["tokens"]["train"] + result["tokens"]["valid"]
    sp = load_sentencepiece(small_tokenizer)
    for split, code in (("train", 0), ("valid", 1)):
        want = [[1, *sp.encode(t), 2] for t, c in zip(texts, codes) if c == code]
        assert [d.tolist() for d in read_documents(prefixes[split])] == want
    # a split with no document still gets a (readable, empty) dataset
    result = tokenize_shard(shard, small_tokenizer, prefixes, assignment=np.zeros(len(texts), dtype=np.int8))
    assert result["docs"]["valid"] == 0 and result["tokens"]["valid"] == 0
    assert (tmp_path / "t" / "0001.valid.bin").stat().st_size == 0
    assert read_documents(prefixes["valid"]) == []
    assert _megatron_bytes(tmp_path, [], np.uint16)[1] == (tmp_path / "t" / "0001.valid.idx").read_bytes()
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "0001.train.bin", "0001.train.idx", "0001.valid.bin", "0001.valid.idx"
    ]


def test_assignment_of_the_wrong_length_leaves_nothing(tmp_path, data_root, small_tokenizer):
    shard = _shard(tmp_path, data_root)
    prefixes = {"train": tmp_path / "o" / "a.train", "valid": tmp_path / "o" / "a.valid"}
    for size in (122, 124):
        message = rf"shard\.jsonl\.zst: dedup assignment has {size} entries but the shard has 123 documents"
        with pytest.raises(EuroflowError, match=message):
            tokenize_shard(shard, small_tokenizer, prefixes, assignment=np.zeros(size, dtype=np.int8))
        assert list((tmp_path / "o").iterdir()) == []
    with pytest.raises(EuroflowError, match="puts document 3 in valid, but there is no output prefix for valid"):
        tokenize_shard(shard, small_tokenizer, tmp_path / "o" / "a", assignment=np.array([0, 0, 0, 1] + [0] * 119, np.int8))
    assert list((tmp_path / "o").iterdir()) == []


def test_outputs_get_the_usual_permissions_and_a_failed_rerun_keeps_them(tmp_path, data_root, small_tokenizer):
    shard = _shard(tmp_path, data_root)
    prefix = tmp_path / "o" / "a"
    tokenize_shard(shard, small_tokenizer, prefix)
    umask = os.umask(0)
    os.umask(umask)
    files = sorted((tmp_path / "o").iterdir())
    assert [f.name for f in files] == ["a.bin", "a.idx"]
    assert {f.stat().st_mode & 0o777 for f in files} == {0o666 & ~umask}
    before = {f.name: f.read_bytes() for f in files}
    with pytest.raises(EuroflowError, match="dedup assignment has 1 entries"):
        tokenize_shard(shard, small_tokenizer, prefix, assignment=np.zeros(1, dtype=np.int8))
    assert {f.name: f.read_bytes() for f in sorted((tmp_path / "o").iterdir())} == before


def test_bad_shard_leaves_no_dataset(tmp_path, small_tokenizer):
    shard = tmp_path / "bad.jsonl.zst"
    whole = zstandard.ZstdCompressor().compress(b'{"text": "ein Satz"}\n' * 2000)
    shard.write_bytes(whole[:-5])
    prefix = tmp_path / "out" / "de"
    with pytest.raises(EuroflowError, match=r"bad\.jsonl\.zst: truncated zstd stream after line \d+"):
        tokenize_shard(shard, small_tokenizer, prefix)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"text": "a b"', r"bad\.jsonl\.zst:1500: malformed JSON"),
        (b'{"text": "a"} {"text": "b"}', r"bad\.jsonl\.zst:1500: malformed JSON"),
        (b'{"txt": "a"}', r"bad\.jsonl\.zst:1500: missing field 'text'"),
        (b'{"text": null}', r"bad\.jsonl\.zst:1500: field 'text' must be a string, got null"),
        (b'[1, 2]', r"bad\.jsonl\.zst:1500: expected a JSON object, got list"),
        (b'{"text": "a", "x": "\xff"}', r"bad\.jsonl\.zst:1500: invalid UTF-8"),
        (b'{"text": "a\\ud800"}', r"bad\.jsonl\.zst:1500: field 'text' has an unpaired surrogate"),
    ],
)
def test_a_bad_line_is_named_and_leaves_nothing(tmp_path, small_tokenizer, line, message):
    shard = tmp_path / "bad.jsonl.zst"
    good = b'{"text": "ein Satz", "id": 1}\n'
    _write_zst(shard, [good * 1499, line + b"\n", good * 10])
    with pytest.raises(EuroflowError, match=message):
        tokenize_shard(shard, small_tokenizer, tmp_path / "out" / "de")
    assert list((tmp_path / "out").iterdir()) == []


def test_small_batches_and_blank_lines_give_the_same_output(tmp_path, data_root, small_tokenizer, monkeypatch):
    """Block boundaries, blank lines (skipped, not documents), CRLF and an unterminated last line."""
    source = _shard(tmp_path, data_root, "sr-Latn")
    lines = [json.dumps({"id": i, "text": d["text"]}, ensure_ascii=False).encode() for i, d in enumerate(read_shard(source))]
    plain = tmp_path / "plain.jsonl.zst"
    _write_zst(plain, [line + b"\n" for line in lines])
    messy = tmp_path / "messy.jsonl.zst"
    body = [line + (b"\r\n" if i % 7 == 0 else b"\n") + (b"  \n" if i % 11 == 0 else b"") for i, line in enumerate(lines)]
    raw = b"\n" + b"".join(body).rstrip(b"\n")
    messy.write_bytes(b"".join(zstandard.ZstdCompressor().compress(raw[i : i + 5000]) for i in range(0, len(raw), 5000)))
    codes = (np.arange(len(lines)) % 5 == 0).astype(np.int8)
    prefixes = {split: tmp_path / f"a.{split}" for split in ("train", "valid")}
    want = tokenize_shard(plain, small_tokenizer, prefixes, assignment=codes)
    monkeypatch.setattr(tok, "BATCH_BYTES", 3000)
    monkeypatch.setattr(tok, "FIRST_BATCH_BYTES", 700)
    monkeypatch.setattr(hplt, "READ_CHUNK", 1000)  # the shared zstd reader's read size
    prefixes = {split: tmp_path / f"b.{split}" for split in ("train", "valid")}
    got = tokenize_shard(messy, small_tokenizer, prefixes, assignment=codes)
    assert got["docs"] == want["docs"] and got["tokens"] == want["tokens"] and got["chars"] == want["chars"]
    for split in ("train", "valid"):
        for suffix in (".bin", ".idx"):
            assert (tmp_path / f"b.{split}{suffix}").read_bytes() == (tmp_path / f"a.{split}{suffix}").read_bytes()


def test_falls_back_to_sentencepiece_when_gigatoken_disagrees(tmp_path, data_root, small_tokenizer, monkeypatch):
    shard = _shard(tmp_path, data_root, "el")
    want = tokenize_shard(shard, small_tokenizer, tmp_path / "want")
    real = tok._Encoder._encode_giga

    def off_by_one(self, texts):
        offsets, content = real(self, texts)
        return offsets, content + 1

    monkeypatch.setattr(tok._Encoder, "_encode_giga", off_by_one)
    got = tokenize_shard(shard, small_tokenizer, tmp_path / "got")
    assert want["backend"] == "gigatoken" and got["backend"] == "sentencepiece"
    assert (tmp_path / "got.bin").read_bytes() == (tmp_path / "want.bin").read_bytes()
    assert (tmp_path / "got.idx").read_bytes() == (tmp_path / "want.idx").read_bytes()


@pytest.fixture(scope="module")
def hf_tokenizer_dir(tmp_path_factory, data_root):
    """A directory with only a byte-level BPE tokenizer.json (Hugging Face tokenizers), vocab 600."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = (data_root / "parallel" / "ntrex128" / "de.txt").read_text(encoding="utf-8").split("\n")[:400]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    directory = tmp_path_factory.mktemp("hf") / "tokenizer"
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def test_hf_tokenizer_json_appends_the_eod(tmp_path, data_root, hf_tokenizer_dir):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(hf_tokenizer_dir / "tokenizer.json"))
    texts = [d["text"] for d in read_shard(_shard(tmp_path, data_root, "de"))] + TRICKY + ["a <|endoftext|> b"]
    shard = tmp_path / "hf.jsonl.zst"
    write_shard(shard, [{"text": t} for t in texts])
    result = tokenize_shard(shard, hf_tokenizer_dir, tmp_path / "hf")
    eod = hf.token_to_id("<|endoftext|>")
    expected = [hf.encode(t, add_special_tokens=False).ids + [eod] for t in texts]
    assert result["backend"] == "gigatoken" and result["dtype"] == "uint16"
    assert [d.tolist() for d in read_documents(tmp_path / "hf")] == expected
    # an eos_token named in tokenizer_config.json is the EOD instead
    (hf_tokenizer_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<pad>"}))
    try:
        tokenize_shard(shard, hf_tokenizer_dir, tmp_path / "pad")
    finally:
        (hf_tokenizer_dir / "tokenizer_config.json").unlink()
    assert {int(d[-1]) for d in read_documents(tmp_path / "pad")} == {hf.token_to_id("<pad>")}


def test_cli_pairs_inputs_with_prefixes(tmp_path, data_root, small_tokenizer, capsys):
    shards = [_shard(tmp_path, data_root, lang, f"{lang}.jsonl.zst") for lang in ("en", "uk")]
    prefixes = [str(tmp_path / "idx" / "en"), str(tmp_path / "idx" / "uk")]
    report = tmp_path / "report.json"
    code = cli.main(["tokenize", "--input", *map(str, shards), "--tokenizer", str(small_tokenizer),
                     "--out-prefix", *prefixes, "--report", str(report)])
    assert code == 0 and [r["docs"]["total"] for r in json.loads(report.read_text())] == [123, 123]
    assert len(read_documents(prefixes[1])) == 123
    assert cli.main(["tokenize", "--input", str(shards[0]), "--tokenizer", str(small_tokenizer),
                     "--out-prefix", *prefixes]) == 1
    assert "one prefix per shard" in capsys.readouterr().err


def test_cli_assignment_and_valid_prefix(tmp_path, data_root, small_tokenizer):
    shard = _shard(tmp_path, data_root, "en")
    assignment = tmp_path / "assignment.npy"
    np.save(assignment, np.array([0, 1, 2] * 41, dtype=np.int8))
    report = tmp_path / "0001.json"
    code = cli.main(["tokenize", "--input", str(shard), "--tokenizer", str(small_tokenizer), "--assignment", str(assignment),
                     "--out-prefix", str(tmp_path / "0001.train"), "--valid-prefix", str(tmp_path / "0001.valid"),
                     "--threads", "2", "--report", str(report)])
    result = json.loads(report.read_text())
    assert code == 0 and result["docs"] == {"train": 41, "valid": 41, "total": 82} and result["dropped"] == 41
    assert result["prefixes"]["valid"] == str(tmp_path / "0001.valid")
    assert len(read_documents(tmp_path / "0001.valid")) == 41


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_index_bytes_are_megatrons(tmp_path, dtype):
    docs = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    tok._write_index(tmp_path / "x.idx", np.array([len(d) for d in docs], dtype=np.int32), dtype)
    assert (tmp_path / "x.idx").read_bytes() == _megatron_bytes(tmp_path, docs, dtype)[1]


def test_a_tokenizer_that_declares_too_small_a_vocabulary_is_refused_before_writing(tmp_path, data_root, small_tokenizer):
    """A tokenizer_meta.json claiming fewer ids than the model has: its ids would wrap in the .bin's dtype."""
    import shutil

    lying = tmp_path / "tokenizer"
    shutil.copytree(small_tokenizer, lying)
    meta = json.loads((lying / "tokenizer_meta.json").read_text())
    (lying / "tokenizer_meta.json").write_text(json.dumps({**meta, "vocab_size": 600}))
    prefix = tmp_path / "out" / "de"
    with pytest.raises(EuroflowError, match=r"tokenizer_meta.json: vocab_size 600, but tokenizer.model has 1500 pieces"):
        tokenize_shard(_shard(tmp_path, data_root), lying, prefix)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_an_id_outside_the_declared_vocabulary_never_reaches_the_bin(small_tokenizer):
    encoder = tok._Encoder(small_tokenizer, 1)
    assert encoder.check_ids(np.array([3, 1499, 7], dtype=np.int64)) == 1499
    with pytest.raises(EuroflowError, match=r"produced token id 70000, outside the vocabulary of 1500 it declares .*stored as uint16"):
        encoder.check_ids(np.array([3, 70000], dtype=np.int64))


def test_the_report_gives_the_largest_token_id(tmp_path, data_root, small_tokenizer):
    result = tokenize_shard(_shard(tmp_path, data_root), small_tokenizer, tmp_path / "de")
    docs = read_documents(tmp_path / "de")
    assert result["max_token_id"] == max(int(d.max()) for d in docs) and result["vocab_size"] == 1500
