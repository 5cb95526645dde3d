"""File and directory digests."""

from __future__ import annotations

import hashlib
import os

from euroflow.provenance.hashing import CHUNK_SIZE, DigestCache, observe, sha256_file


def test_file_digest_streams_over_chunks(tmp_path):
    data = os.urandom(CHUNK_SIZE * 2 + 123)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    seen = observe(path)
    assert (seen.kind, seen.size, seen.sha256) == ("file", len(data), hashlib.sha256(data).hexdigest())


def _tree(root, files):
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return observe(root)


def test_directory_digest_tracks_names_contents_and_presence(tmp_path):
    base = _tree(tmp_path / "a", {"x.txt": "1", "sub/y.txt": "2"})
    same_other_order = _tree(tmp_path / "b", {"sub/y.txt": "2", "x.txt": "1"})
    renamed = _tree(tmp_path / "c", {"x2.txt": "1", "sub/y.txt": "2"})
    changed = _tree(tmp_path / "d", {"x.txt": "1", "sub/y.txt": "3"})
    extra = _tree(tmp_path / "e", {"x.txt": "1", "sub/y.txt": "2", "z": ""})
    assert base.kind == "directory" and base.size == 2
    assert base.sha256 == same_other_order.sha256
    assert len({base.sha256, renamed.sha256, changed.sha256, extra.sha256}) == 4


def test_snakemake_marker_is_not_content(tmp_path):
    plain = _tree(tmp_path / "a", {"x.txt": "1"})
    marked = _tree(tmp_path / "b", {"x.txt": "1", ".snakemake_timestamp": ""})
    assert plain.sha256 == marked.sha256


def test_missing_path(tmp_path):
    seen = observe(tmp_path / "nothing")
    assert (seen.kind, seen.sha256, seen.size) == ("missing", None, None)


def test_cache_notices_a_rewrite(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one")
    cache = DigestCache()
    assert cache.sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_text("two")  # same size: the inode/mtime/ctime key must still change
    os.utime(path, ns=(1, 1))
    assert cache.sha256(path) == hashlib.sha256(b"two").hexdigest()
