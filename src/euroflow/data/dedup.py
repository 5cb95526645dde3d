"""Per-language deduplication across a language's shards: exact, then near duplicates (MinHash LSH).

Two stages, matching the DAG:

1. Per shard, the prepare job records one signature per *kept* document, in document order, with
   :class:`SignatureWriter`: a 16-byte exact key and a MinHash row. On success it writes one ``.npz``
   (arrays ``exact`` (n, 16) uint8, ``minhash`` (n, num_perm) uint32, ``params`` JSON) atomically; a
   failing block writes nothing. Rows wait in a temporary file until then (``16 + 4 * num_perm`` bytes
   per document: 528 B at 128 permutations), so the job's memory does not grow with the shard.
2. Per language, the sort-based stages of :mod:`euroflow.data.minhash` (one job per band, then one
   job joining the bands' duplicate pairs into clusters) give one int8 assignment per shard, one code
   per kept document: ``TRAIN`` 0, ``VALID`` 1, ``EXACT`` 2 (exact duplicate, removed), ``NEAR`` 3
   (near duplicate, removed). :func:`dedup_language` runs them in one process; :func:`write_assignments`
   stores the codes in one ``.npz`` with a member per shard; :func:`read_assignment` reads one shard's.

Normalization (:func:`normalize`; the text is already NFC): ``str.casefold``, whitespace runs (any Unicode
whitespace) collapsed to one space, leading/trailing whitespace stripped. :func:`exact_key` is the 16-byte
BLAKE2b of the UTF-8 normalized text, so texts differing only in case or spacing are exact duplicates.

MinHash (:func:`minhash_signatures`): shingles are the word ``ngram``-grams of the normalized text (words =
its space-separated tokens, joined by one space, UTF-8); a text of fewer than ``ngram`` words is one
shingle (the whole normalized text; the empty text is the shingle ``b""``). Values are those of
``datasketch.MinHash(num_perm, seed=seed, hashfunc=shingle_hash32)`` (datasketch >= 2.0, default
``"affine32"`` scheme) updated with every shingle, computed in batches with numpy from the same
permutations. :func:`shingle_hash32` is a 64-bit polynomial hash of the shingle's bytes finished with
splitmix64, because numpy computes it for every shingle of a batch at once from prefix sums (datatrove
hashes shingles with xxhash for the same reason); datasketch's default, SHA-1 per shingle in a Python
loop, made signing most of a prepare job's time.

Decisions (first occurrence wins, in the given order of shards, then document order):

- exact: documents with equal exact keys are duplicates;
- near: documents that share one LSH band (``b`` bands x ``r`` rows, datasketch's optimal choice for
  the threshold, by default with equal false-positive/false-negative weights) and whose Jaccard
  similarity estimated from the two signatures (share of equal MinHash values) is >= ``threshold``;
- clusters: the connected components of both relations. Each keeps its first document; the others
  are ``EXACT`` if an earlier document has the same exact key, else ``NEAR``. In a chain A~B~C with
  A !~ C, A is kept and B and C are removed.
- split: a kept document is ``VALID`` iff ``int.from_bytes(exact_key[:8], "little") / 2**64 <
  valid_fraction``, else ``TRAIN``: content-based, so the same text lands in the same split in every run.

Memory of every stage is bounded by a shard, a sorted range of one band (:mod:`euroflow.data.minhash`)
or the duplicates found, never by the language's size.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from euroflow.atomic import atomic_path
from euroflow.data.spool import RowSpool, write_npz
from euroflow.errors import EuroflowError

TRAIN, VALID, EXACT, NEAR = 0, 1, 2, 3
SCHEME = "affine32"  # datasketch >= 2.0 default permutation scheme
FORMAT = 2  # 2: shingles hashed with shingle_hash32 (1: SHA-1, datasketch's default hash)
_CHUNK_SHINGLES = 1 << 14  # shingles per numpy block: 8 MiB of uint32 at 128 permutations, near the caches
BATCH_BYTES = 1 << 20  # text hashed at once: 8 MiB uint64 arrays, kept by malloc and the caches between batches
_BASE = 0x100000001B3  # odd (the 64-bit FNV prime), so invertible mod 2**64
_BASE_INVERSE = pow(_BASE, -1, 2**64)
_POWERS: list[np.ndarray] = [np.ones(0, np.uint64), np.ones(0, np.uint64)]
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_PERMUTATIONS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

PathLike = str | os.PathLike


def normalize(text: str) -> str:
    """Casefold, collapse whitespace runs to one space, strip."""
    return " ".join(text.casefold().split())


def exact_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of the normalized UTF-8 text."""
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).digest()


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own permutation parameters ``(a, b)`` (uint32) for ``MinHash(num_perm, seed)`` in the
    ``affine32`` scheme, drawn as datasketch draws them; importing datasketch (and scipy) for two arrays
    would cost a prepare job about 1.7 s."""
    key = (num_perm, seed)
    if key not in _PERMUTATIONS:
        gen = np.random.RandomState(seed)
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        _PERMUTATIONS[key] = (a, b)
    return _PERMUTATIONS[key]


def splitmix64(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def unmix64(h: np.ndarray) -> np.ndarray:
    """The inverse of :func:`splitmix64` (each of its steps is a bijection of 64-bit words)."""
    with np.errstate(over="ignore"):
        h = _unshift(h, 31) * np.uint64(pow(0x94D049BB133111EB, -1, 2**64))
        h = _unshift(h, 27) * np.uint64(pow(0xBF58476D1CE4E5B9, -1, 2**64))
        return _unshift(h, 30)


def _unshift(y: np.ndarray, k: int) -> np.ndarray:
    """``x`` with ``x ^ (x >> k) == y``: ``y ^ y >> k ^ y >> 2k ^ ...``."""
    x, shift = y.copy(), k
    while shift < 64:
        x ^= y >> np.uint64(shift)
        shift += k
    return x


def shingle_hash32(data: bytes) -> int:
    """The 32-bit hash of one shingle, one byte at a time (the reference for the vectorized one, and a
    ``hashfunc`` for ``datasketch.MinHash``): ``splitmix64(sum((b_j + 1) * B**j) mod 2**64)``, low 32 bits."""
    h = 0
    for j, byte in enumerate(data):
        h = (h + (byte + 1) * pow(_BASE, j, 2**64)) % 2**64
    return int(splitmix64(np.array([h], dtype=np.uint64))[0]) & 0xFFFFFFFF


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``B**j`` and ``B**-j`` mod 2**64 for ``j < n`` (at least), computed once and kept."""
    if len(_POWERS[0]) < n:
        size = max(n, BATCH_BYTES + 1)
        _POWERS[:] = [_geometric(base, size) for base in (_BASE, _BASE_INVERSE)]
    return _POWERS[0], _POWERS[1]


def _geometric(base: int, n: int) -> np.ndarray:
    """``base**j mod 2**64`` for ``j < n`` by doubling (``P[k:2k] = P[:k] * base**k``): one vectorized
    multiply per doubling, where ``np.cumprod`` ran a scalar loop (0.3 s for the two tables at 4 M)."""
    powers = np.ones(n, dtype=np.uint64)
    if n > 1:
        powers[1] = base
    k = 2
    with np.errstate(over="ignore"):
        while k < n:
            step = min(k, n - k)
            np.multiply(powers[:step], powers[k - 1] * np.uint64(base), out=powers[k : k + step])
            k += step
    return powers


@functools.cache
def _space_tables() -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """What ``str.split()`` splits on, as UTF-8: a flag per single byte, the lead bytes of the multi-byte
    characters, and those characters' bytes as integers by length."""
    single, leads, codes = np.zeros(256, dtype=bool), np.zeros(256, dtype=bool), {2: [], 3: []}
    every = np.concatenate([np.arange(0xD800, dtype=np.uint32), np.arange(0xE000, 0x110000, dtype=np.uint32)])
    for char in re.findall(r"\s", every.tobytes().decode("utf-32-le")):  # \s is str.isspace; 20 ms, not 70 in a loop
        data = char.encode("utf-8")
        if len(data) == 1:
            single[data[0]] = True
        else:
            leads[data[0]] = True
            codes[len(data)].append(int.from_bytes(data, "big"))
    return single, leads, {width: np.array(found, dtype=np.int64) for width, found in codes.items()}



class WordBatch:
    """A batch of normalized texts split into words, with the prefix sums their shingle hashes come from,
    so that several n-gram sizes (MinHash's 5-grams, decontamination's 13-grams) share one pass.

    The texts are joined with newlines (normalized text has none). With the prefix sums ``P`` of
    ``(b_j + 1) * B**j`` over the joined bytes, the polynomial of the bytes ``[s, e)`` is
    ``(P[e] - P[s]) * B**-s`` (mod 2**64; B is odd): every shingle's hash without a Python loop."""

    def __init__(self, normalized: list[bytes]):
        self.texts = normalized
        self._index(np.frombuffer(b"\n".join(normalized), dtype=np.uint8), len(normalized))

    @classmethod
    def of_texts(cls, texts: Sequence[str]) -> WordBatch:
        """The batch of ``[normalize(t).encode("utf-8") for t in texts]``, normalized all at once: one
        ``casefold`` of the joined texts (case folding is per character), then the whitespace runs found
        and collapsed in numpy on the UTF-8 bytes, where ``split`` and ``join`` per text made a Python
        string of every word (a third of a prepare job's time)."""
        joined = "\x00".join(texts)
        if not texts or joined.count("\x00") != len(texts) - 1:  # a text holds NUL itself (control characters kept)
            return cls([normalize(text).encode("utf-8") for text in texts])
        space_bytes, space_leads, space_codes = _space_tables()
        data = np.frombuffer(joined.casefold().encode("utf-8"), dtype=np.uint8)
        space = space_bytes[data]
        leads = np.flatnonzero(space_leads[data])  # where a multi-byte whitespace character may start
        if len(leads):
            padded = np.concatenate([data, np.zeros(2, np.uint8)]).astype(np.int64)
            two = padded[leads] << 8 | padded[leads + 1]
            three = two << 8 | padded[leads + 2]
            for width, codes, found in ((2, two, space_codes[2]), (3, three, space_codes[3])):
                at = leads[np.isin(codes, found)]
                for k in range(width):
                    space[at + k] = True
        keep = ~space
        keep[1:] |= space[1:] & ~space[:-1]  # the first byte of each whitespace run stays, as one space
        out = np.where(space, np.uint8(32), data)[keep]
        edge = np.zeros(len(out), dtype=bool)  # spaces at the start or end of a text go
        if len(out):
            edge[0] = edge[-1] = True
            edge[1:] |= out[:-1] == 0
            edge[:-1] |= out[1:] == 0
        out = out[~(edge & (out == 32))]
        out[out == 0] = 10
        batch = cls.__new__(cls)
        batch.texts = out.tobytes().split(b"\n")
        batch._index(out, len(texts))
        return batch

    def _index(self, joined: np.ndarray, count: int) -> None:
        size = len(joined)
        powers, self._inverse = _powers(size + 1)
        with np.errstate(over="ignore"):
            self._prefix = np.zeros(size + 1, dtype=np.uint64)
            np.cumsum((joined.astype(np.uint64) + np.uint64(1)) * powers[:size], out=self._prefix[1:])
        separators = np.flatnonzero((joined == 32) | (joined == 10))
        self._word_start = np.concatenate([[0], separators + 1])
        self._word_end = np.concatenate([separators, [size]])
        newlines = np.flatnonzero(joined[separators] == 10)  # the separators that end a text
        self._word_doc = np.zeros(len(self._word_start), dtype=np.int64)
        self._word_doc[newlines + 1] = 1
        np.cumsum(self._word_doc, out=self._word_doc)
        self._words_per_doc = np.bincount(self._word_doc, minlength=count) if count else np.zeros(0, np.int64)
        self._first_word = np.concatenate([[0], np.cumsum(self._words_per_doc)[:-1]])

    def __len__(self) -> int:
        return len(self.texts)

    def shingle_hashes(self, ngram: int, *, short_texts: bool = True, mixed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(hashes uint64, first shingle of each text)`` of every word ``ngram``-gram of the texts; the
        low 32 bits of each are :func:`shingle_hash32`. A text of <= ``ngram`` words is one shingle, all of
        it, with ``short_texts`` (MinHash); without, a text of fewer than ``ngram`` words has none.
        ``mixed=False``: the polynomials before splitmix64 (:func:`unmix64` of the hashes)."""
        if not self.texts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        word_doc, words_per_doc, first_word = self._word_doc, self._words_per_doc, self._first_word
        i = np.arange(max(len(word_doc) - ngram + 1, 0))
        sliding = i[word_doc[i] == word_doc[i + ngram - 1]]  # words i..i+ngram-1 of one text
        if short_texts:
            sliding = sliding[words_per_doc[word_doc[sliding]] > ngram]
            short = np.flatnonzero(words_per_doc <= ngram)
        else:
            short = np.zeros(0, dtype=np.int64)
        starts = self._word_start[sliding]
        ends = self._word_end[sliding + ngram - 1]
        docs = word_doc[sliding]
        if len(short):  # a short text's one shingle goes among its neighbours' (docs stay sorted)
            short_first = first_word[short]
            starts = np.concatenate([starts, self._word_start[short_first]])
            ends = np.concatenate([ends, self._word_end[short_first + words_per_doc[short] - 1]])
            docs = np.concatenate([docs, short])
            order = np.argsort(docs, kind="stable")
            starts, ends, docs = starts[order], ends[order], docs[order]
        with np.errstate(over="ignore"):
            hashes = (self._prefix[ends] - self._prefix[starts]) * self._inverse[starts]
        return splitmix64(hashes) if mixed else hashes, np.searchsorted(docs, np.arange(len(self.texts)))


def shingle_hashes64(normalized: list[bytes], ngram: int, *, short_texts: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`WordBatch.shingle_hashes` of one batch."""
    return WordBatch(normalized).shingle_hashes(ngram, short_texts=short_texts)


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


def minhash_signatures(texts: list[str], *, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> np.ndarray:
    """``(len(texts), num_perm)`` uint32 MinHash values, equal to datasketch's (see module docstring).

    Shingle hashes are :func:`shingle_hash32`, computed for all shingles of a batch at once; the
    permutation ``a * fmix32(h) + b mod 2**32`` and the per-document minimum run in numpy over blocks.
    """
    return _signatures([normalize(text).encode("utf-8") for text in texts], num_perm, ngram, seed)


def byte_batches(normalized: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` slices of ``normalized`` of about ``BATCH_BYTES`` each (one longer text alone)."""
    start = 0
    while start < len(normalized):
        stop, size = start, 0
        while stop < len(normalized) and (stop == start or size + len(normalized[stop]) <= BATCH_BYTES):
            size += len(normalized[stop]) + 1
            stop += 1
        yield start, stop
        start = stop


def _signatures(normalized: list[bytes], num_perm: int, ngram: int, seed: int) -> np.ndarray:
    out = np.empty((len(normalized), num_perm), dtype=np.uint32)
    for start, stop in byte_batches(normalized):
        out[start:stop] = batch_signatures(WordBatch(normalized[start:stop]), num_perm=num_perm, ngram=ngram, seed=seed)
    return out


def batch_signatures(batch: WordBatch, *, num_perm: int, ngram: int, seed: int) -> np.ndarray:
    """:func:`minhash_signatures` of the texts of one :class:`WordBatch`."""
    if ngram < 1:
        raise EuroflowError(f"dedup: ngram {ngram} must be >= 1")
    a, b = _permutations(num_perm, seed)
    out = np.empty((len(batch), num_perm), dtype=np.uint32)
    hashes, offsets = batch.shingle_hashes(ngram)
    mixed = _fmix32((hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))  # shingle_hash32 of each
    ends = np.append(offsets[1:], len(hashes))
    buffer = np.empty(num_perm * _CHUNK_SHINGLES, dtype=np.uint32)  # reused: a fresh array per block faults its pages in
    lo = 0
    while lo < len(batch):  # blocks of at most _CHUNK_SHINGLES shingles (or one text), whole texts each
        hi = max(int(np.searchsorted(ends, offsets[lo] + _CHUNK_SHINGLES, side="right")), lo + 1)
        block = mixed[offsets[lo] : ends[hi - 1]]
        space = buffer if len(block) <= _CHUNK_SHINGLES else np.empty(num_perm * len(block), dtype=np.uint32)
        values = space[: num_perm * len(block)].reshape(num_perm, len(block))  # (num_perm, shingles): rows reduce fast
        np.multiply(a[:, None], block[None, :], out=values)
        values += b[:, None]
        out[lo:hi] = np.minimum.reduceat(values, offsets[lo:hi] - offsets[lo], axis=1).T
        lo = hi
    return out


class SignatureWriter:
    """Record the signatures of one shard's kept documents; write them in one atomic ``.npz`` on success.

    ``with SignatureWriter(path) as writer: writer.add(texts)`` per batch, in document order. Rows are
    spooled to a temporary file beside ``path`` (``16 + 4 * num_perm`` bytes per document on disk, one
    batch in memory); an exception inside the block leaves ``path`` untouched.
    """

    def __init__(self, path: PathLike, *, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        self.path = Path(path)
        self.params = {"num_perm": num_perm, "ngram": ngram, "seed": seed, "scheme": SCHEME, "format": FORMAT}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._exact = RowSpool(np.uint8, 16, self.path.parent)
        self._minhash = RowSpool(np.uint32, num_perm, self.path.parent)

    @property
    def count(self) -> int:
        return self._exact.rows

    def __enter__(self) -> SignatureWriter:
        return self

    def add(self, texts: list[str]) -> None:
        self.add_normalized([normalize(text).encode("utf-8") for text in texts])

    def add_normalized(self, normalized: list[bytes]) -> None:
        """:meth:`add` for texts already through :func:`normalize` and UTF-8 encoded."""
        for start, stop in byte_batches(normalized):
            self.add_batch(WordBatch(normalized[start:stop]))

    def add_batch(self, batch: WordBatch, keep: Sequence[bool] | np.ndarray | None = None) -> None:
        """Record the texts of ``batch`` (those where ``keep`` is true, with ``keep``)."""
        texts = batch.texts if keep is None else [text for text, kept in zip(batch.texts, keep) if kept]
        if not texts:
            return
        keys = b"".join(hashlib.blake2b(data, digest_size=16).digest() for data in texts)
        self._exact.add(np.frombuffer(keys, dtype=np.uint8))
        rows = batch_signatures(batch, num_perm=self.params["num_perm"], ngram=self.params["ngram"], seed=self.params["seed"])
        self._minhash.add(rows if keep is None else rows[np.asarray(keep, dtype=bool)])

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                    write_npz(f, {"exact": self._exact, "minhash": self._minhash}, self.params)
        finally:
            self._exact.close()
            self._minhash.close()


def read_signatures(path: PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(exact (n, 16) uint8, minhash (n, num_perm) uint32, params)`` of one signature file, whole
    (:class:`euroflow.data.minhash.SignatureFile` reads it in pieces and checks it)."""
    from euroflow.data.minhash import SignatureFile

    signatures = SignatureFile(path)
    return signatures.rows("exact", 0, signatures.docs), signatures.rows("minhash", 0, signatures.docs), signatures.params


def dedup_language(
    signature_paths: Sequence[PathLike],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    valid_fraction: float = 0.0,
    near: bool = True,
    weights: tuple[float, float] = (0.5, 0.5),
    pair_paths: Sequence[PathLike] | None = None,
    range_docs: int | None = None,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """One int8 assignment per signature file (same order) and a report; see the module docstring.

    The stages of :mod:`euroflow.data.minhash` in this process: each band's pairs (into a temporary
    directory, unless ``pair_paths`` gives the band jobs' files), the clusters, each
    shard's codes. The report has ``docs``, ``exact_duplicates``, ``near_duplicates``,
    ``exact_fraction``, ``near_fraction``, ``kept``, ``valid``, ``train``, ``shards`` (per file: path,
    docs, exact, near, valid, train), ``pairs`` (per band), ``params`` (threshold, num_perm, ngram,
    seed, scheme, bands, rows, valid_fraction, near, weights) and ``seconds``. All files must share
    num_perm (= ``num_perm``), ngram and seed.

    ``weights`` (false-positive, false-negative) chooses bands x rows as datasketch's ``MinHashLSH``
    does; the default (0.5, 0.5) is datasketch's. At threshold 0.8 and 128 permutations it gives b=9,
    r=13, which makes a pair of true Jaccard 0.8 a candidate with probability 0.40 only (0.69 at 0.85,
    0.93 at 0.9); (0.1, 0.9) gives b=14, r=9 (0.87 / 0.98 / 1.00) at the cost of more band jobs.
    Candidates are always verified against ``threshold``, so a lower false-negative cost does not add
    false positives beyond the estimator's own error (about ``sqrt(J * (1 - J) / num_perm)``, 0.035 at
    J=0.8 and 128).
    """
    codes, report = [], None
    for item in dedup_stream(signature_paths, threshold=threshold, num_perm=num_perm, valid_fraction=valid_fraction,
                             near=near, weights=weights, pair_paths=pair_paths, range_docs=range_docs):
        if isinstance(item, dict):
            report = item
        else:
            codes.append(item)
    return codes, report


def dedup_stream(
    signature_paths: Sequence[PathLike],
    *,
    threshold: float,
    num_perm: int,
    valid_fraction: float,
    near: bool,
    weights: tuple[float, float],
    pair_paths: Sequence[PathLike] | None = None,
    range_docs: int | None = None,
):
    """:func:`dedup_language` as a stream: each shard's codes in turn (one shard in memory), then the report."""
    import tempfile

    from euroflow.data import minhash

    start_time = time.perf_counter()
    if not signature_paths:
        raise EuroflowError("dedup: no signature files given")
    if not 0.0 < threshold <= 1.0:
        raise EuroflowError(f"dedup: threshold {threshold} is not in (0, 1]")
    if not 0.0 <= valid_fraction <= 1.0:
        raise EuroflowError(f"dedup: valid_fraction {valid_fraction} is not in [0, 1]")
    if len(weights) != 2 or min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-9:
        raise EuroflowError(f"dedup: weights {tuple(weights)} must be two non-negative numbers summing to 1")
    paths = [Path(p) for p in signature_paths]
    files = minhash.open_signatures(paths, num_perm)
    bands, rows = minhash.band_layout(threshold, num_perm, tuple(weights))
    wanted = minhash.band_ids(near, bands)
    with tempfile.TemporaryDirectory(prefix=".dedup-", dir=paths[0].parent) as scratch:
        if pair_paths is None:
            pair_paths = [Path(scratch) / "pairs.npz"]
            minhash.band_pairs(paths, wanted, pair_paths[0], threshold=threshold, num_perm=num_perm, weights=weights,
                               range_docs=range_docs or minhash.RANGE_DOCS)
        found, pairs = minhash.clusters(pair_paths, wanted, (sum(f.docs for f in files), len(files)))
    counts = []
    for shard_codes in minhash.language_codes(files, found, valid_fraction):
        counts.append({code: int(np.count_nonzero(shard_codes == code)) for code in (TRAIN, VALID, EXACT, NEAR)})
        yield shard_codes
    total = {code: sum(c[code] for c in counts) for code in (TRAIN, VALID, EXACT, NEAR)}
    n = sum(f.docs for f in files)
    reference = files[0].params
    yield {
        "docs": n,
        "exact_duplicates": total[EXACT],
        "near_duplicates": total[NEAR],
        "exact_fraction": total[EXACT] / n if n else 0.0,
        "near_fraction": total[NEAR] / n if n else 0.0,
        "kept": total[TRAIN] + total[VALID],
        "valid": total[VALID],
        "train": total[TRAIN],
        "shards": [
            {"path": str(f.path), "docs": f.docs, "exact": c[EXACT], "near": c[NEAR], "valid": c[VALID], "train": c[TRAIN]}
            for f, c in zip(files, counts)
        ],
        "pairs": {str(band): count for band, count in pairs.items()},
        "params": {
            "threshold": threshold, "num_perm": num_perm, "ngram": reference["ngram"], "seed": reference["seed"],
            "scheme": reference["scheme"], "bands": bands if near else None, "rows": rows if near else None,
            "valid_fraction": valid_fraction, "near": near, "weights": list(weights), "method": "sorted-bands",
        },
        "seconds": round(time.perf_counter() - start_time, 3),
    }


def write_assignments(path: PathLike, assignments: Iterable[np.ndarray], names: Sequence[str]) -> None:
    """One language's assignment file, atomically: an uncompressed ``.npz`` with ``names`` and one int8
    array per shard (``shard<i>``), so a tokenize job reads its own shard's codes, not the language's.

    ``assignments`` may be a generator: shards are written as they come, one in memory at a time."""
    from numpy.lib import format as npy_format

    if len(set(names)) != len(names):
        raise EuroflowError(f"{path}: shard names repeat")
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("names.npy", "w") as entry:
            npy_format.write_array(entry, np.array(list(names), dtype=str), allow_pickle=False)
        written = 0
        for codes in assignments:
            if written == len(names):
                raise EuroflowError(f"{path}: more assignments than the {len(names)} shard names")
            with archive.open(f"shard{written}.npy", "w", force_zip64=True) as entry:
                npy_format.write_array(entry, np.asarray(codes, dtype=np.int8), allow_pickle=False)
            written += 1
        if written != len(names):
            raise EuroflowError(f"{path}: {written} assignments for {len(names)} shard names")


def read_assignment(path: PathLike, name: str) -> np.ndarray:
    """The int8 assignment of shard ``name`` (one code per kept document) from an assignment file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "names" not in npz.files:
                raise EuroflowError(f"{path}: not an assignment file (no names)")
            names = npz["names"].tolist()
            if name not in names:
                raise EuroflowError(f"{path}: no assignment for shard {name!r} (has {len(names)} shards)")
            member = f"shard{names.index(name)}"
            if member not in npz.files:
                raise EuroflowError(f"{path}: not an assignment file of this euroflow (no {member}); re-run the language's dedup job")
            return npz[member]
    except FileNotFoundError:
        raise EuroflowError(f"{path}: assignment file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EuroflowError(f"{path}: not a readable assignment file ({exc})") from None
