"""Content digests of files and directories.

A directory's digest is Merkle-style: the sha256 of its manifest, one line
``<sha256 of file>  <relative POSIX path>\\n`` per file, sorted by path (bytewise, the
format of ``sha256sum``), so it changes when any file's content, name or presence changes.
Check one by hand: ``find . -type f ! -path ./.snakemake_timestamp | sed 's|^\\./||' |
LC_ALL=C sort | xargs sha256sum | sha256sum`` (names without spaces).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CHUNK_SIZE = 1 << 20
# Snakemake's empty marker in every directory() output: bookkeeping, not content
SNAKEMAKE_DIR_MARKER = ".snakemake_timestamp"


@dataclass(frozen=True)
class Observation:
    """What was found at a path: kind (file, directory, missing), digest and size in bytes."""

    path: str
    kind: str
    sha256: str | None
    size: int | None


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """Remembers file digests by (path, inode, size, mtime, ctime) so that an input read by
    many jobs of a run is hashed once; any change to the file changes the key."""

    def __init__(self) -> None:
        self._digests: dict[tuple, str] = {}

    def sha256(self, path: str | os.PathLike) -> str:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in self._digests:
            self._digests[key] = sha256_file(path)
        return self._digests[key]

    def export(self) -> list[list]:
        """The remembered digests as JSON-ready rows, for another process's :meth:`seed`."""
        return [[*key, digest] for key, digest in self._digests.items()]

    def seed(self, rows: list[list]) -> None:
        """Take digests another process computed (a job's sidecar): a row only ever matches a
        file whose inode, size and times are still the same, so a changed file is hashed again."""
        for row in rows:
            if isinstance(row, list) and len(row) == 6 and isinstance(row[5], str):
                self._digests[tuple(row[:5])] = row[5]


def directory_manifest(path: str | os.PathLike, cache: DigestCache | None = None) -> list[tuple[str, str, int]]:
    """(relative POSIX path, sha256, size) of every file under ``path``, sorted by path.

    Symbolic links are followed; a directory reached twice (a link cycle) is walked once.
    Snakemake's ``.snakemake_timestamp`` marker at the top is left out.
    """
    digest_of = cache.sha256 if cache is not None else sha256_file
    root = Path(path)
    seen_dirs: set[str] = set()
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel == SNAKEMAKE_DIR_MARKER:
                continue
            entries.append((rel, digest_of(full), full.stat().st_size))
    entries.sort(key=lambda e: e[0].encode("utf-8", "surrogateescape"))
    return entries


def directory_digest(manifest: list[tuple[str, str, int]]) -> str:
    lines = "".join(f"{sha}  {rel}\n" for rel, sha, _ in manifest)
    return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()


def observe(path: str | os.PathLike, cache: DigestCache | None = None) -> Observation:
    """Digest whatever is at ``path`` (absolute path recorded as given, not resolved)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        manifest = directory_manifest(path, cache)
        return Observation(path, "directory", directory_digest(manifest), sum(e[2] for e in manifest))
    if os.path.isfile(path):
        digest = cache.sha256(path) if cache is not None else sha256_file(path)
        return Observation(path, "file", digest, os.path.getsize(path))
    return Observation(path, "missing", None, None)
