"""The sort-based MinHash dedup stages: band pairs sorted a key range at a time, clusters, shard codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from euroflow.data import minhash
from euroflow.data.dedup import EXACT, NEAR, TRAIN, SignatureWriter, dedup_language, read_assignment
from euroflow.errors import EuroflowError

THRESHOLD, WEIGHTS = 0.75, (0.1, 0.9)  # the config's defaults: 16 bands of 8 rows at 128 permutations


def signature_file(path: Path, minhash_rows: np.ndarray, exact: np.ndarray | None = None, num_perm: int = 128) -> Path:
    """A signature file as prepare writes it, with chosen MinHash rows (and exact keys: random if not given)."""
    rng = np.random.default_rng(len(minhash_rows))
    if exact is None:
        exact = rng.integers(0, 256, size=(len(minhash_rows), 16), dtype=np.uint8)
    params = {"num_perm": num_perm, "ngram": 5, "seed": 1, "scheme": "affine32", "format": 1}
    with open(path, "wb") as f:
        np.savez(f, exact=exact, minhash=minhash_rows.astype(np.uint32), params=np.array(json.dumps(params)))
    return path


def changed(row: np.ndarray, bands: range, rng) -> np.ndarray:
    """``row`` with every value of the given LSH bands (8 rows each) replaced."""
    out = row.copy()
    for band in bands:
        out[band * 8 : (band + 1) * 8] = rng.integers(0, 2**32, 8, dtype=np.uint64)
    return out


def run(paths, **kwargs):
    return dedup_language(paths, threshold=THRESHOLD, weights=WEIGHTS, **kwargs)


def test_the_band_layout_is_datasketchs():
    assert minhash.band_layout(THRESHOLD, 128, WEIGHTS) == (16, 8)
    assert minhash.band_parts([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert minhash.band_parts([0, 1, 2], None) == [[0], [1], [2]]


def test_a_chain_a_b_c_is_one_cluster_that_keeps_a(tmp_path):
    """A~B (J 0.81) and B~C (J 0.81), A !~ C (J 0.62): C is a duplicate through B, as in datatrove."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 128, dtype=np.uint64)
    b = changed(a, range(0, 3), rng)
    c = changed(b, range(3, 6), rng)
    assert np.mean(a == b) >= THRESHOLD and np.mean(b == c) >= THRESHOLD and np.mean(a == c) < THRESHOLD
    others = rng.integers(0, 2**32, (20, 128), dtype=np.uint64)
    first = signature_file(tmp_path / "s0.sig.npz", np.vstack([others[:10], a]))
    second = signature_file(tmp_path / "s1.sig.npz", np.vstack([c, others[10:], b]))  # C comes before B
    (codes0, codes1), report = run([first, second])
    assert codes0.tolist() == [TRAIN] * 11
    assert codes1.tolist() == [NEAR] + [TRAIN] * 10 + [NEAR]
    assert report["near_duplicates"] == 2 and report["exact_duplicates"] == 0 and report["kept"] == 21


def test_exact_and_near_duplicates_of_one_document_are_one_cluster(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**32, 128, dtype=np.uint64)
    key = rng.integers(0, 256, 16, dtype=np.uint8)
    rows = np.vstack([rng.integers(0, 2**32, (3, 128), dtype=np.uint64), a, a, changed(a, range(0, 2), rng)])
    exact = rng.integers(0, 256, size=(6, 16), dtype=np.uint8)
    exact[3] = exact[4] = key  # the same text twice, then a near copy of it
    path = signature_file(tmp_path / "s.sig.npz", rows, exact)
    (codes,), report = run([path])
    assert codes.tolist() == [TRAIN, TRAIN, TRAIN, TRAIN, EXACT, NEAR]
    assert report["exact_duplicates"] == 1 and report["near_duplicates"] == 1
    assert report["pairs"]["0"] == 1 and sum(report["pairs"].values()) > 1
    (codes,), report = run([path], near=False)
    assert codes.tolist() == [TRAIN, TRAIN, TRAIN, TRAIN, EXACT, TRAIN] and list(report["pairs"]) == ["0"]


def test_results_do_not_depend_on_key_ranges_or_band_jobs(tmp_path, data_root):
    """Real text, many small sorted ranges and bands split over jobs: the same decisions."""
    sentences = [s for s in (data_root / "parallel" / "ntrex128" / "de.txt").read_text("utf-8").split("\n") if s]
    docs = [" ".join(sentences[i : i + 3]) for i in range(0, 600, 3)]
    docs += [d.replace(" und ", " oder ", 1) for d in docs[:40]] + docs[50:70]
    paths = []
    for i in range(3):
        with SignatureWriter(tmp_path / f"s{i}.sig.npz") as writer:
            writer.add(docs[i::3])
        paths.append(tmp_path / f"s{i}.sig.npz")
    one_range, report = run(paths)
    assert report["exact_duplicates"] >= 20 and report["near_duplicates"] >= 10
    many_ranges, _ = run(paths, range_docs=7)
    for x, y in zip(one_range, many_ranges):
        np.testing.assert_array_equal(x, y)
    bands = minhash.band_ids(True, 16)
    parts = [tmp_path / f"part{k}.npz" for k in range(3)]
    for part, part_bands in zip(parts, minhash.band_parts(bands, 3)):
        minhash.band_pairs(paths, part_bands, part, threshold=THRESHOLD, weights=WEIGHTS, range_docs=50)
    from_jobs, _ = run(paths, pair_paths=parts)
    for x, y in zip(one_range, from_jobs):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(EuroflowError, match=r"no pairs of bands \[2, 5"):
        run(paths, pair_paths=parts[:2])


def test_an_empty_language_has_no_pairs_and_empty_codes(tmp_path):
    paths = [signature_file(tmp_path / f"s{i}.sig.npz", np.zeros((0, 128), np.uint32)) for i in range(2)]
    report = minhash.band_pairs(paths, [0, 1, 16], tmp_path / "pairs.npz", threshold=THRESHOLD, weights=WEIGHTS)
    assert report["docs"] == 0 and report["pairs"] == {0: 0, 1: 0, 16: 0}
    assert {band: p.shape for band, p in minhash.read_pairs(tmp_path / "pairs.npz")} == {b: (0, 2) for b in (0, 1, 16)}
    codes, report = run(paths, valid_fraction=0.5)
    assert [c.shape for c in codes] == [(0,), (0,)] and report["docs"] == 0 and report["kept"] == 0


def test_a_band_job_killed_midway_leaves_nothing_and_its_rerun_is_whole(tmp_path):
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 2**32, (60_000, 16), dtype=np.uint64)
    rows[30_000:] = rows[:30_000]  # every document twice: exact and near pairs to find
    exact = rng.integers(0, 256, size=(60_000, 16), dtype=np.uint8)
    exact[30_000:] = exact[:30_000]
    paths = [signature_file(tmp_path / f"s{i}.sig.npz", rows[i::4], exact[i::4], num_perm=16) for i in range(4)]
    out = tmp_path / "dedup" / "bands0.npz"
    code = ("import sys; from euroflow.data.minhash import band_pairs; "
            f"band_pairs({[str(p) for p in paths]!r}, [0, 1, 2], {str(out)!r}, threshold=0.75, num_perm=16, range_docs=20)")
    job = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.ranges-*/*.bin")) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the spill files are being written: pass 1 is under way
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    assert not out.exists() and list(out.parent.glob(f".{out.name}.ranges-*"))  # killed: a spill directory remains
    report = minhash.band_pairs(paths, [0, 1, 2], out, threshold=0.75, num_perm=16, range_docs=20)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the rerun cleared what the killed job left
    pairs = dict(minhash.read_pairs(out))[0]
    assert report["pairs"][0] == 30_000 and pairs.shape == (30_000, 2)
    assert (pairs[:, 1] - pairs[:, 0] == 7_500).all()  # each copy with its original, 7,500 later in the same shard


def test_the_dag_runs_band_jobs_then_the_language_job(tmp_path, small_pipeline_config):
    """`euroflow data dedup-band` per band job and `euroflow data dedup --pairs` agree with one process."""
    from euroflow.data.cli import main
    from euroflow.paths import RunPaths

    cfg = small_pipeline_config(tmp_path, "bands", ["de"], 10)
    cfg["data"]["source"] = {"kind": "ntrex-demo"}
    cfg["data"]["dedup_band_jobs"] = 4
    paths = RunPaths(cfg)
    (tmp_path / "bands").mkdir()
    config_path = tmp_path / "bands" / "config.json"
    config_path.write_text(json.dumps(cfg))
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 2**32, (50, 128), dtype=np.uint64)
    rows[40:] = rows[:10]
    sig = Path(paths.filtered("de", "ntrex", "sig.npz"))
    sig.parent.mkdir(parents=True)
    signature_file(sig, rows)
    parts = paths.dedup_parts
    assert len(parts) == 4 and sorted(b for part in parts for b in part) == list(range(17))
    for k, bands in enumerate(parts):
        assert main(["dedup-band", "--config", str(config_path), "--lang", "de", "--bands", *map(str, bands),
                     "--out", paths.dedup_pairs("de", k)]) == 0
    (codes,), _ = run([sig], pair_paths=paths.dedup_pair_files("de"))
    assert codes.tolist() == [TRAIN] * 40 + [NEAR] * 10
    assert main(["dedup-band", "--config", str(config_path), "--lang", "fr", "--bands", "0", "--out", str(tmp_path / "x.npz")]) == 1


def test_assignments_are_read_one_shard_at_a_time(tmp_path):
    from euroflow.data.dedup import write_assignments

    path = tmp_path / "a.npz"
    write_assignments(path, (np.full(n, n % 4, np.int8) for n in range(5)), [f"s{n}" for n in range(5)])
    assert read_assignment(path, "s3").tolist() == [3, 3, 3]
    with np.load(path) as npz:
        assert sorted(npz.files) == ["names", "shard0", "shard1", "shard2", "shard3", "shard4"]
    with pytest.raises(EuroflowError, match="2 assignments for 3 shard names"):
        write_assignments(tmp_path / "b.npz", [np.zeros(1, np.int8)] * 2, ["a", "b", "c"])
    assert not (tmp_path / "b.npz").exists() and sorted(os.listdir(tmp_path)) == ["a.npz"]


def test_signatures_of_two_formats_do_not_mix(tmp_path):
    rows = np.zeros((2, 128), np.uint32)
    old = signature_file(tmp_path / "old.sig.npz", rows)
    with SignatureWriter(tmp_path / "new.sig.npz") as writer:  # format 2: another shingle hash
        writer.add(["a document of a few words here", "and another one"])
    with pytest.raises(EuroflowError, match=r"new.sig.npz: signature params .*'format': 2.*re-run the prepare jobs"):
        run([old, tmp_path / "new.sig.npz"])


def test_pairs_of_other_shards_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    paths = [signature_file(tmp_path / f"s{i}.sig.npz", rng.integers(0, 2**32, (10 + i, 128), dtype=np.uint64)) for i in range(3)]
    minhash.band_pairs(paths[:2], minhash.band_ids(True, 16), tmp_path / "two.npz", threshold=THRESHOLD, weights=WEIGHTS)
    with pytest.raises(EuroflowError, match=r"two.npz: pairs of 21 documents in 2 shards, but the language has 33 in 3"):
        run(paths, pair_paths=[tmp_path / "two.npz"])
