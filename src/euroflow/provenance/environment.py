"""What a run was made of: the source commit and the versions of the key packages."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

# distribution names as pip knows them; "python" is the interpreter itself
KEY_PACKAGES = (
    "python",
    "torch",
    "megatron-core",
    "snakemake",
    "transformers",
    "sentencepiece",
    "gguf",
    "numpy",
)

GIT_TIMEOUT_S = 60


def _git(directory: str | os.PathLike, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", os.fspath(directory), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(directory: str | os.PathLike) -> tuple[str | None, bool | None]:
    """(HEAD commit, dirty) of the work tree containing ``directory``.

    Dirty means modified tracked files or untracked files git does not ignore. Outside a
    git work tree both are None; in a repository without commits the commit is None.
    """
    if _git(directory, "rev-parse", "--is-inside-work-tree") is None:
        return None, None
    head = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD")
    status = _git(directory, "status", "--porcelain")
    commit = head.strip() if head else None
    dirty = None if status is None else bool(status.strip())
    return commit, dirty


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None if not installed), read from metadata
    without importing anything."""
    versions: dict[str, str | None] = {}
    for name in names:
        if name == "python":
            versions[name] = platform.python_version()
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
