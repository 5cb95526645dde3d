"""Where a recorded artifact is on disk, wherever its results tree has moved.

An artifact inside the results tree of the run that recorded it (``runs.root``) is stored by its
path relative to that root; anything else (the shared data bundle, crawl shards) by its absolute
path. A run's tree can later be found elsewhere (an archive, a copy, a purged and restored
scratch): ``prov relocate`` records each such place (``run_locations``), and readers resolve the
stored paths against the newest one, or against a root given on the command line.
"""

from __future__ import annotations

import os
from typing import Any


def stored_path(path: str, root: str | None) -> str:
    """How ``path`` (absolute) is stored for a run whose tree is ``root``."""
    if root and os.path.isabs(path):
        root = os.path.normpath(root)
        try:
            inside = os.path.commonpath([os.path.normpath(path), root]) == root
        except ValueError:  # different drives, or a relative mix
            inside = False
        if inside and os.path.normpath(path) != root:
            return os.path.relpath(path, root)
    return path


def on_disk(stored: str, root: str | None) -> str:
    """Where a stored path is, for a run whose tree is now at ``root``."""
    if os.path.isabs(stored) or not root:
        return stored
    return os.path.join(root, stored)


def current_root(run: Any) -> str | None:
    """The newest recorded location of a run's tree (``prov relocate``), else where it was written."""
    locations = list(getattr(run, "locations", None) or [])
    return locations[-1].root if locations else getattr(run, "root", None)
