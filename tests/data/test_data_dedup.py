"""Exact and near-duplicate removal on real NTREX text; signatures equal datasketch's MinHash with our shingle hash."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash

from euroflow.data import dedup
from euroflow.data.dedup import (
    EXACT,
    NEAR,
    TRAIN,
    VALID,
    SignatureWriter,
    WordBatch,
    dedup_language,
    exact_key,
    minhash_signatures,
    normalize,
    read_assignment,
    read_signatures,
    shingle_hashes64,
    write_assignments,
)
from euroflow.errors import EuroflowError


def ntrex(data_root, lang: str) -> list[str]:
    return [s for s in (data_root / "parallel" / "ntrex128" / f"{lang}.txt").read_text("utf-8").split("\n") if s]


def documents(sentences: list[str], words: int) -> list[str]:
    """Consecutive sentences joined until a document has at least ``words`` words (disjoint runs)."""
    docs, current = [], []
    for sentence in sentences:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= words:
            docs.append(" ".join(current))
            current = []
    return docs


def shingles(text: str, ngram: int = 5) -> set[bytes]:
    words = text.casefold().split()
    if len(words) < ngram:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + ngram]).encode() for i in range(len(words) - ngram + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def write(path, texts, **params):
    with SignatureWriter(path, **params) as writer:
        for i in range(0, len(texts), 7):  # several batches
            writer.add(texts[i : i + 7])
    return path


@pytest.mark.parametrize("batch_bytes", [1 << 22, 40])  # texts hashed in one batch, and one or two at a time
def test_minhash_equals_datasketch(data_root, monkeypatch, batch_bytes):
    monkeypatch.setattr(dedup, "_CHUNK_SHINGLES", 50)  # cross block boundaries inside one call
    monkeypatch.setattr(dedup, "BATCH_BYTES", batch_bytes)
    texts = [" ".join(ntrex(data_root, lang)[10:14]) for lang in ("en", "ka", "el", "tr")]
    texts += ["", "one", "Two  Words", "a b c d e", "  Größe  STRASSE\t und\nmehr  Wörter hier "]
    for num_perm, ngram, seed in ((128, 5, 1), (64, 3, 7)):
        ours = minhash_signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed)
        assert ours.dtype == np.uint32 and ours.shape == (len(texts), num_perm)
        for text, row in zip(texts, ours):
            reference = MinHash(num_perm=num_perm, seed=seed, hashfunc=dedup.shingle_hash32)
            for shingle in shingles(text, ngram):
                reference.update(shingle)
            np.testing.assert_array_equal(row, reference.hashvalues)


def test_a_batch_normalized_at_once_equals_each_text_normalized(data_root):
    """WordBatch.of_texts (one casefold, whitespace collapsed in numpy) against normalize per text, on
    every character str.split() splits on, case folding that changes lengths, empty and blank texts."""
    import random

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    alphabet = list("abcXYZ .,ßİΣσςÉé日本\u00ad\u200b") + spaces
    rng = random.Random(1)
    batches = [[ "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(1, 8))]
               for _ in range(2000)]
    batches += [[""], ["", ""], [" \u00a0 "], ntrex(data_root, "el")[:50], ["a\x00b", "c"]]  # NUL: one text at a time
    for texts in batches:
        batch = WordBatch.of_texts(texts)
        expected = [normalize(t).encode("utf-8") for t in texts]
        assert batch.texts == expected, texts
        for ngram in (1, 2, 5):
            for short_texts in (True, False):
                ours, reference = batch.shingle_hashes(ngram, short_texts=short_texts), shingle_hashes64(expected, ngram, short_texts=short_texts)
                np.testing.assert_array_equal(ours[0], reference[0])
                np.testing.assert_array_equal(ours[1], reference[1])


def test_exact_key_normalization():
    assert exact_key("Hello  World\n") == exact_key(" hello world") == exact_key("HELLO\u00a0world")
    assert exact_key("hello world") != exact_key("hello world!")
    assert len(exact_key("x")) == 16


def test_writer_records_exact_keys_and_minhash_in_order(tmp_path, data_root):
    texts = documents(ntrex(data_root, "ka"), 40)[:20]
    exact, minhash, params = read_signatures(write(tmp_path / "ka.npz", texts, num_perm=32, ngram=3, seed=5))
    assert [bytes(row) for row in exact] == [exact_key(t) for t in texts]
    np.testing.assert_array_equal(minhash, minhash_signatures(texts, num_perm=32, ngram=3, seed=5))
    assert (params["num_perm"], params["ngram"], params["seed"]) == (32, 3, 5)


def test_exact_duplicates_across_shards_first_kept(tmp_path, data_root):
    d = documents(ntrex(data_root, "de"), 80)[:5]
    a = write(tmp_path / "a.npz", [d[0], d[1], d[2], d[1]])
    b = write(tmp_path / "b.npz", [d[3], "  " + d[0].upper(), d[4], d[2]])
    (ca, cb), report = dedup_language([a, b])
    assert ca.tolist() == [TRAIN, TRAIN, TRAIN, EXACT]
    assert cb.tolist() == [TRAIN, EXACT, TRAIN, EXACT]
    assert report["docs"] == 8 and report["exact_duplicates"] == 3 and report["near_duplicates"] == 0
    assert report["kept"] == 5 and report["shards"][1]["exact"] == 2
    assert report["params"]["bands"] * report["params"]["rows"] <= 128
    # the other order keeps b's copies instead
    (cb2, ca2), _ = dedup_language([b, a])
    assert cb2.tolist() == [TRAIN] * 4 and ca2.tolist() == [EXACT, TRAIN, EXACT, EXACT]


def test_planted_near_duplicates_found_distinct_docs_kept(tmp_path, data_root):
    base = documents(ntrex(data_root, "en"), 150)[:40] + documents(ntrex(data_root, "uk"), 150)[:20]
    rng = np.random.default_rng(0)
    planted = []
    for k in range(0, 60, 6):
        words = base[k].split()
        i = int(rng.integers(10, len(words) - 10))
        if k % 12:
            words[i] = "zebra"  # one word replaced
        else:
            words.insert(i, "indeed")  # one word inserted
        planted.append(" ".join(words))
        assert jaccard(base[k], planted[-1]) >= 0.9
    a = write(tmp_path / "a.npz", base[:30])
    b = write(tmp_path / "b.npz", base[30:] + planted)
    (ca, cb), report = dedup_language([a, b], threshold=0.8)
    assert (ca == TRAIN).all() and (cb[:30] == TRAIN).all()
    assert (cb[30:] == NEAR).all()
    assert report["near_duplicates"] == len(planted) and report["exact_duplicates"] == 0
    (_, cb_exact_only), report = dedup_language([a, b], near=False)
    assert (cb_exact_only == TRAIN).all() and report["params"]["bands"] is None


def test_valid_fraction_content_based(tmp_path, data_root):
    texts = sorted(set(ntrex(data_root, "fr")))
    a = write(tmp_path / "a.npz", texts[: len(texts) // 2])
    b = write(tmp_path / "b.npz", texts[len(texts) // 2 :])
    (ca, cb), report = dedup_language([a, b], valid_fraction=0.1, near=False)
    codes = np.concatenate([ca, cb])
    assert set(codes.tolist()) <= {TRAIN, VALID}
    assert report["valid"] == int((codes == VALID).sum())
    assert 0.08 < report["valid"] / len(texts) < 0.12
    (cb2, ca2), _ = dedup_language([b, a], valid_fraction=0.1, near=False)  # same text, same split
    np.testing.assert_array_equal(np.concatenate([ca2, cb2]), codes)
    (c0, _), _ = dedup_language([a, b], valid_fraction=0.0, near=False)
    assert (c0 == TRAIN).all()


def test_mismatched_params_name_the_file(tmp_path):
    a = write(tmp_path / "a.npz", ["some text here to hash"])
    b = write(tmp_path / "b.npz", ["some other text to hash"], ngram=3)
    with pytest.raises(EuroflowError, match="b.npz"):
        dedup_language([a, b])
    c = write(tmp_path / "c.npz", ["text"], num_perm=64)
    with pytest.raises(EuroflowError, match="c.npz.*num_perm 64"):
        dedup_language([c])


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "sig.npz"
    with pytest.raises(RuntimeError):
        with SignatureWriter(path) as writer:
            writer.add(["a document", "another document"])
            raise RuntimeError("filter crashed")
    assert list(tmp_path.iterdir()) == []
    with SignatureWriter(path):
        pass  # a shard with no kept documents
    exact, minhash, params = read_signatures(path)
    assert exact.shape == (0, 16) and minhash.shape == (0, 128) and params["ngram"] == 5
    (codes,), report = dedup_language([path])
    assert codes.shape == (0,) and report["docs"] == 0


def test_assignments_round_trip_and_errors(tmp_path):
    path = tmp_path / "assign.npz"
    write_assignments(path, [np.array([0, 2, 3], np.int8), np.array([], np.int8)], ["s0", "s1"])
    assert read_assignment(path, "s0").tolist() == [0, 2, 3]
    assert read_assignment(path, "s1").dtype == np.int8 and len(read_assignment(path, "s1")) == 0
    with pytest.raises(EuroflowError, match="assign.npz.*'s2'"):
        read_assignment(path, "s2")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(EuroflowError, match="bad.npz"):
        read_signatures(bad)
    with pytest.raises(EuroflowError, match="missing.npz"):
        read_signatures(tmp_path / "missing.npz")
    with pytest.raises(EuroflowError, match="assign.npz"):
        read_signatures(path)
