"""Sort-based MinHash deduplication in bounded memory: band jobs, then one job per language.

The algorithm of datatrove's ``MinhashDedupSignature/Buckets/Cluster/Filter`` stages, on our own files
(the per-shard signature ``.npz`` that prepare writes, :mod:`euroflow.data.dedup`). Written here rather
than run through datatrove because datatrove's stages read and write their own signature files, computed
with its own hash (it would mean signing every document twice) and do not verify candidate pairs, and
because our jobs are Snakemake jobs with their own provenance, not a datatrove executor.

1. :func:`band_pairs` (jobs per language, each with one or more bands): band 0 is the exact key (its bytes 8-16 as one
   uint64; pairs are checked on all 16 bytes), bands 1..b are datasketch's LSH bands (``b`` bands of ``r``
   MinHash values, :func:`band_layout`), each hashed to one uint64 (:func:`band_keys`). Pass 1 reads the
   language's shards in chunks and spills ``(key, document id)`` records into ranges of the key space
   (``range_docs`` records each on average, files beside the output); pass 2 sorts one range at a time
   and pairs every document with the first (lowest id) document of its run of equal keys, and with its
   predecessor in the run when that fails. A candidate pair is kept if it is a duplicate: equal exact
   keys (band 0), or an estimated Jaccard similarity (share of equal MinHash values) ``>= threshold``.
   Memory: one range, one chunk and a spill buffer, whatever the language's size, plus the pairs found.
   Output: an ``.npz`` with one ``(pairs, 2)`` uint64 array of document ids per band, lower id first;
   ids count documents through the shards in the given order.
2. :func:`clusters` (one job per language): the connected components of all bands' pairs, joined one
   band file at a time into a forest (each duplicate document points at its component's lowest id), so
   memory grows with the duplicates found, not with the language. In each component the lowest id, the
   first occurrence in shard then document order, is kept; every other document is removed: ``EXACT``
   if it is the later one of an exact pair, else ``NEAR``. A chain A~B~C with A !~ C is one cluster and
   keeps only A (datatrove's and the field's choice; a document is a duplicate of its cluster).
3. :func:`shard_codes`: one shard's int8 codes (``TRAIN``, ``VALID``, ``EXACT``, ``NEAR``, as
   :mod:`euroflow.data.dedup`), the valid split drawn from the exact key as before.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from numpy.lib import format as npy_format

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError

TRAIN, VALID, EXACT, NEAR = 0, 1, 2, 3
RANGE_DOCS = 1 << 20  # records sorted at once in a band job: ~16 MiB, ~60 MiB with the sort's temporaries
CHUNK_ROWS = 1 << 16  # signature rows read at once: 32 MiB at 128 permutations
SPILL_RECORDS = 1 << 22  # records gathered before they are spilled into their ranges' files: 64 MiB
_RECORD = np.dtype([("key", "<u8"), ("doc", "<u8")])

PathLike = str | os.PathLike


@functools.lru_cache(maxsize=None)
def band_layout(threshold: float, num_perm: int, weights: tuple[float, float]) -> tuple[int, int]:
    """``(bands, rows)``: datasketch's ``MinHashLSH`` choice for this threshold, num_perm and (fp, fn) weights."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=tuple(weights))
    return lsh.b, lsh.r


def band_ids(near: bool, bands: int) -> list[int]:
    """The bands a language's dedup runs: 0 (exact) and, for near dedup, 1..bands."""
    return list(range(1 + bands)) if near else [0]


def band_parts(bands: Sequence[int], jobs: int | None) -> list[list[int]]:
    """``bands`` dealt round-robin into ``jobs`` band jobs (None: one job per band)."""
    jobs = len(bands) if jobs is None else max(1, min(jobs, len(bands)))
    return [list(bands[i::jobs]) for i in range(jobs)]


def band_keys(values: np.ndarray, band: int) -> np.ndarray:
    """One uint64 per row of ``values`` ((n, r) uint32: one band of MinHash values); equal rows, equal keys."""
    from euroflow.data.dedup import splitmix64

    h = np.full(len(values), (band * 0x94D049BB133111EB) % 2**64, dtype=np.uint64)
    for column in np.ascontiguousarray(values, dtype=np.uint32).T:
        h = splitmix64(h ^ column.astype(np.uint64))
    return h


class SignatureFile:
    """One shard's signature ``.npz`` (uncompressed), read in pieces without loading it.

    ``np.load`` of an ``.npz`` reads a whole array; here each array's place in the file is found once
    from the zip's local headers and rows are read with plain reads (no memory map, so what a job has
    read does not stay in its resident memory)."""

    def __init__(self, path: PathLike):
        import json

        self.path = Path(path)
        self.arrays: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}
        try:
            with zipfile.ZipFile(self.path) as archive, open(self.path, "rb") as raw:
                for info in archive.infolist():
                    if info.compress_type != zipfile.ZIP_STORED:
                        raise EuroflowError(f"{self.path}: {info.filename} is compressed; signature files are stored")
                    raw.seek(info.header_offset + 26)
                    name_len, extra_len = np.frombuffer(raw.read(4), "<u2").tolist()
                    raw.seek(info.header_offset + 30 + name_len + extra_len)
                    major, _ = npy_format.read_magic(raw)
                    read_header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
                    shape, fortran, dtype = read_header(raw)
                    if fortran:
                        raise EuroflowError(f"{self.path}: {info.filename} is in Fortran order")
                    self.arrays[info.filename.removesuffix(".npy")] = (raw.tell(), shape, dtype)
                params = archive.read("params.npy")
        except FileNotFoundError:
            raise EuroflowError(f"{self.path}: signature file not found") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise EuroflowError(f"{self.path}: not a readable signature file ({exc})") from None
        try:
            import io

            self.params = json.loads(str(np.load(io.BytesIO(params), allow_pickle=False)))
            self.num_perm = int(self.params["num_perm"])
            exact, minhash = self.arrays["exact"], self.arrays["minhash"]
        except (KeyError, ValueError, TypeError) as exc:
            raise EuroflowError(f"{self.path}: not a signature file (missing or bad {exc})") from None
        self.docs = exact[1][0] if exact[1] else 0
        if exact[1] != (self.docs, 16) or exact[2] != np.uint8:
            raise EuroflowError(f"{self.path}: exact keys have shape {exact[1]} {exact[2]}, expected (n, 16) uint8")
        if minhash[1] != (self.docs, self.num_perm) or minhash[2] != np.uint32:
            raise EuroflowError(f"{self.path}: minhash has shape {minhash[1]} {minhash[2]}, "
                                f"expected ({self.docs}, {self.num_perm}) uint32")

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of array ``name`` (``exact`` or ``minhash``)."""
        offset, shape, dtype = self.arrays[name]
        width = shape[1]
        stop = min(stop, shape[0])
        with open(self.path, "rb") as f:
            f.seek(offset + start * width * dtype.itemsize)
            data = np.fromfile(f, dtype=dtype, count=max(stop - start, 0) * width)
        if len(data) != max(stop - start, 0) * width:
            raise EuroflowError(f"{self.path}: truncated ({name} rows {start}:{stop}); re-run the shard's prepare job")
        return data.reshape(-1, width)

    def take(self, name: str, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (sorted) of array ``name``, through a memory map dropped on return (its pages with it)."""
        offset, shape, dtype = self.arrays[name]
        if not len(index):
            return np.empty((0, shape[1]), dtype)
        return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape)[index]  # a copy


def open_signatures(paths: Sequence[PathLike], num_perm: int) -> list[SignatureFile]:
    """The language's signature files, checked to share num_perm (= ``num_perm``), ngram, seed, scheme and
    format (the shingle hash)."""
    files, reference = [], None
    for path in paths:
        sig = SignatureFile(path)
        mine = {k: sig.params.get(k) for k in ("num_perm", "ngram", "seed", "scheme", "format")}
        if reference is None:
            reference = mine
            if mine["num_perm"] != num_perm:
                raise EuroflowError(f"{sig.path}: signatures have num_perm {mine['num_perm']}, dedup expects {num_perm}")
        elif mine != reference:
            raise EuroflowError(f"{sig.path}: signature params {mine} differ from {files[0].path}'s {reference}; "
                                "re-run the prepare jobs of the language's shards")
        files.append(sig)
    return files


def _offsets(files: Sequence[SignatureFile]) -> np.ndarray:
    offsets = np.zeros(len(files) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([f.docs for f in files], dtype=np.uint64)
    return offsets


def _gather(files: Sequence[SignatureFile], offsets: np.ndarray, name: str, ids: np.ndarray) -> np.ndarray:
    """Rows of array ``name`` for document ids ``ids`` (any order), read shard by shard."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    shard = np.searchsorted(offsets, sorted_ids, side="right") - 1
    _, _, dtype = files[0].arrays[name]
    width = files[0].arrays[name][1][1]
    out = np.empty((len(ids), width), dtype=dtype)
    bounds = np.searchsorted(shard, np.arange(len(files) + 1))
    for s in np.unique(shard).tolist():
        lo, hi = bounds[s], bounds[s + 1]
        local = (sorted_ids[lo:hi] - offsets[s]).astype(np.int64)
        unique, inverse = np.unique(local, return_inverse=True)
        out[order[lo:hi]] = files[s].take(name, unique)[inverse]
    return out


def _verified(files, offsets, a: np.ndarray, b: np.ndarray, band: int, threshold: float) -> np.ndarray:
    if not len(a):
        return np.zeros(0, dtype=bool)
    if band == 0:
        return (_gather(files, offsets, "exact", a) == _gather(files, offsets, "exact", b)).all(axis=1)
    equal = np.count_nonzero(_gather(files, offsets, "minhash", a) == _gather(files, offsets, "minhash", b), axis=1)
    return equal >= threshold * files[0].num_perm - 1e-9


def _range_pairs(records: np.ndarray, verify) -> tuple[np.ndarray, int]:
    """Duplicate pairs among one range's records (sorted here): ``((pairs, 2) uint64, candidates)``."""
    records.sort(order=("key", "doc"))
    keys, docs = records["key"], records["doc"]
    m = len(records)
    if m < 2:
        return np.empty((0, 2), np.uint64), 0
    start = np.ones(m, dtype=bool)
    start[1:] = keys[1:] != keys[:-1]
    position = np.arange(m)
    first = np.maximum.accumulate(np.where(start, position, 0))
    member = np.flatnonzero(~start)
    if not len(member):
        return np.empty((0, 2), np.uint64), 0
    a, b = docs[first[member]], docs[member]
    ok = verify(a, b)
    pairs = [np.stack([a[ok], b[ok]], axis=1)]
    retry = member[~ok]
    retry = retry[retry - 1 != first[retry]]  # the predecessor, where it is not the run's first
    candidates = len(member) + len(retry)
    if len(retry):
        a2, b2 = docs[retry - 1], docs[retry]
        ok2 = verify(a2, b2)
        pairs.append(np.stack([a2[ok2], b2[ok2]], axis=1))
    return np.concatenate(pairs).astype(np.uint64), candidates


def _clear_stale(out: Path, marker: str) -> None:
    """Spill directories a killed job of this output left behind (one job writes an output at a time)."""
    for stale in out.parent.glob(f".{out.name}.{marker}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def band_pairs(
    signature_paths: Sequence[PathLike],
    bands: Sequence[int],
    out: PathLike,
    *,
    threshold: float,
    num_perm: int = 128,
    weights: tuple[float, float] = (0.5, 0.5),
    range_docs: int = RANGE_DOCS,
) -> dict[str, Any]:
    """Write the duplicate pairs of bands ``bands`` among one language's shards to ``out``; return a report.

    ``out`` is an uncompressed ``.npz`` with one ``(pairs, 2)`` uint64 array ``band<b>`` per band. The
    signatures are read once for all the bands; each band is then sorted a key range at a time."""
    started = time.perf_counter()
    if not 0.0 < threshold <= 1.0:
        raise EuroflowError(f"dedup: threshold {threshold} is not in (0, 1]")
    if range_docs < 1:
        raise EuroflowError(f"dedup: range_docs {range_docs} must be >= 1")
    total_bands, rows = band_layout(threshold, num_perm, tuple(weights))
    bands = list(bands)
    if not bands or len(set(bands)) != len(bands) or not all(0 <= b <= total_bands for b in bands):
        raise EuroflowError(f"dedup: bands {bands} must be distinct and in 0..{total_bands} (threshold {threshold}, num_perm {num_perm})")
    out = Path(out)
    files = open_signatures(signature_paths, num_perm)
    offsets = _offsets(files)
    total = int(offsets[-1])
    ranges = max(1, -(-total // range_docs))
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(out, "ranges")
    spill = Path(tempfile.mkdtemp(prefix=f".{out.name}.ranges-", dir=out.parent))

    def spill_out(band: int, buffer: list[np.ndarray]) -> None:
        records = np.concatenate(buffer)
        which = ((records["key"] >> np.uint64(32)) * np.uint64(ranges)) >> np.uint64(32)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(ranges + 1, dtype=np.uint64))
        for r in np.flatnonzero(np.diff(bounds)).tolist():
            with open(spill / f"{band}.{r}.bin", "ab") as f:
                records[order[bounds[r] : bounds[r + 1]]].tofile(f)
        buffer.clear()

    report = {"bands": bands, "of_bands": total_bands, "rows": rows, "docs": total, "shards": len(files),
              "ranges": ranges, "range_docs": range_docs, "candidates": {}, "pairs": {}}
    try:
        buffers: dict[int, list[np.ndarray]] = {band: [] for band in bands}
        buffered = 0
        for s, sig in enumerate(files):  # pass 1: every document's keys into their ranges' files
            for start in range(0, sig.docs, CHUNK_ROWS):
                exact = sig.rows("exact", start, start + CHUNK_ROWS) if 0 in bands else None
                minhash = sig.rows("minhash", start, start + CHUNK_ROWS) if bands != [0] else None
                n = len(exact if exact is not None else minhash)
                ids = offsets[s] + np.arange(start, start + n, dtype=np.uint64)
                for band in bands:
                    records = np.empty(n, _RECORD)
                    if band == 0:
                        records["key"] = exact[:, 8:16].copy().view("<u8").ravel()
                    else:
                        records["key"] = band_keys(minhash[:, (band - 1) * rows : band * rows], band)
                    records["doc"] = ids
                    buffers[band].append(records)
                buffered += n * len(bands)
                if buffered >= SPILL_RECORDS:
                    for band in bands:
                        spill_out(band, buffers[band])
                    buffered = 0
        for band in bands:
            if buffers[band]:
                spill_out(band, buffers[band])
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("docs.npy", "w") as entry:  # what the ids count, checked by clusters()
                npy_format.write_array(entry, np.array([total, len(files)], dtype=np.int64), allow_pickle=False)
            for band in bands:  # pass 2: one band and one range at a time

                def verify(a, b, band=band):
                    return _verified(files, offsets, a, b, band, threshold)

                found, candidates = [], 0
                for r in range(ranges):
                    path = spill / f"{band}.{r}.bin"
                    if not path.exists():
                        continue
                    pairs, tried = _range_pairs(np.fromfile(path, dtype=_RECORD), verify)
                    path.unlink()
                    found.append(pairs)
                    candidates += tried
                pairs = np.concatenate(found) if found else np.empty((0, 2), np.uint64)
                with archive.open(f"band{band}.npy", "w", force_zip64=True) as entry:
                    npy_format.write_array(entry, pairs, allow_pickle=False)
                report["candidates"][band], report["pairs"][band] = candidates, len(pairs)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def read_pairs(path: PathLike) -> Iterator[tuple[int, np.ndarray]]:
    """``(band, (pairs, 2) uint64)`` of one pair file, one band in memory at a time, in the file's order."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in [name for name in npz.files if name.startswith("band")]:
                pairs = npz[name]
                if pairs.dtype != np.uint64 or pairs.ndim != 2 or pairs.shape[1] != 2:
                    raise EuroflowError(f"{path}: {name} pairs have shape {pairs.shape} {pairs.dtype}, expected (n, 2) uint64")
                yield int(name.removeprefix("band")), pairs
                del pairs
    except FileNotFoundError:
        raise EuroflowError(f"{path}: pair file not found; run the language's dedup_band jobs") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EuroflowError(f"{path}: not a readable pair file ({exc})") from None


def _forest(edges: np.ndarray) -> np.ndarray:
    """``(root, node)`` for every non-root node of the components of ``edges``; root = lowest id."""
    if not len(edges):
        return np.empty((0, 2), np.uint64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, inverse = np.unique(edges, return_inverse=True)
    inverse = inverse.reshape(edges.shape)
    graph = coo_matrix((np.ones(len(edges), np.int8), (inverse[:, 0], inverse[:, 1])), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)  # nodes are sorted: a label's first node is its lowest id
    roots = nodes[first[labels]]
    child = roots != nodes
    return np.stack([roots[child], nodes[child]], axis=1)


class Clusters:
    """The documents a language's dedup removes: ``removed`` and ``exact`` (a subset), sorted uint64 ids."""

    def __init__(self, removed: np.ndarray, exact: np.ndarray):
        self.removed, self.exact = removed, exact

    def in_shard(self, ids: np.ndarray, start: int, stop: int) -> np.ndarray:
        lo, hi = np.searchsorted(ids, np.array([start, stop], dtype=np.uint64))
        return (ids[lo:hi] - np.uint64(start)).astype(np.int64)


def clusters(pair_paths: Sequence[PathLike], bands: Sequence[int], docs: tuple[int, int] | None = None
             ) -> tuple[Clusters, dict[int, int]]:
    """Join the pair files' bands into clusters (see the module docstring); every band of ``bands`` must
    be in exactly one file, and each file must count ``docs`` (documents, shards) if given: ids of other
    shards, or of the same shards in another order, would remove the wrong documents. Returns the
    clusters and the number of pairs per band."""
    forest = np.empty((0, 2), np.uint64)
    pairs_per_band: dict[int, int] = {}
    exact = np.empty(0, np.uint64)
    for path in pair_paths:
        if docs is not None:
            counted = _pair_file_docs(path)
            if counted != tuple(docs):
                raise EuroflowError(f"{path}: pairs of {counted[0]:,} documents in {counted[1]} shards, but the language "
                                    f"has {docs[0]:,} in {docs[1]}; re-run its dedup_band jobs")
        for band, pairs in read_pairs(path):
            if band in pairs_per_band or band not in bands:
                raise EuroflowError(f"{path}: band {band} is {'repeated' if band in pairs_per_band else 'not one of ' + str(list(bands))}")
            pairs_per_band[band] = len(pairs)
            if band == 0:
                exact = np.unique(pairs[:, 1])
            forest = _forest(np.concatenate([forest, pairs]))
    missing = sorted(set(bands) - set(pairs_per_band))
    if missing:
        raise EuroflowError(f"dedup: no pairs of bands {missing} in {', '.join(map(str, pair_paths))}; run their dedup_band jobs")
    removed = np.sort(forest[:, 1])
    return Clusters(removed, exact), dict(sorted(pairs_per_band.items()))


def _pair_file_docs(path: PathLike) -> tuple[int, int]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return tuple(int(x) for x in npz["docs"])  # type: ignore[return-value]
    except FileNotFoundError:
        raise EuroflowError(f"{path}: pair file not found; run the language's dedup_band jobs") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise EuroflowError(f"{path}: not a readable pair file ({exc})") from None


def shard_codes(sig: SignatureFile, start: int, found: Clusters, valid_fraction: float) -> np.ndarray:
    """One shard's int8 codes; ``start`` is its first document's id in the language."""
    codes = np.full(sig.docs, TRAIN, dtype=np.int8)
    if valid_fraction > 0 and sig.docs:
        for lo in range(0, sig.docs, CHUNK_ROWS * 8):
            position = sig.rows("exact", lo, lo + CHUNK_ROWS * 8)[:, :8].copy().view("<u8").ravel() / 2.0**64
            codes[lo : lo + len(position)][position < valid_fraction] = VALID
    codes[found.in_shard(found.removed, start, start + sig.docs)] = NEAR
    codes[found.in_shard(found.exact, start, start + sig.docs)] = EXACT
    return codes


def language_codes(files: Sequence[SignatureFile], found: Clusters, valid_fraction: float) -> Iterator[np.ndarray]:
    """Each shard's codes in turn (one shard in memory at a time)."""
    offsets = _offsets(files)
    for s, sig in enumerate(files):
        yield shard_codes(sig, int(offsets[s]), found, valid_fraction)
