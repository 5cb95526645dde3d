"""Which euroflow checkout a command works on: the Snakefile, profiles, site files and schemas.

A shared project environment (one venv on a cluster, several clones of the repository) must not
read another clone's profiles: commands that plan a submission (``site check``, ``plan``) take the
checkout in the working directory, or the one named with ``--directory``, and only fall back to
the checkout euroflow was installed from when the working directory is not one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from euroflow.errors import EuroflowError

INSTALLED_FROM = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Checkout:
    root: Path

    @property
    def snakefile(self) -> Path:
        return self.root / "Snakefile"

    @property
    def sites(self) -> Path:
        return self.root / "sites"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def config_schema(self) -> Path:
        return self.root / "workflow" / "schemas" / "config.schema.yaml"

    @property
    def site_schema(self) -> Path:
        return self.root / "workflow" / "schemas" / "site.schema.yaml"


def is_checkout(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "Snakefile").is_file() and (path / "sites").is_dir() and (path / "profiles").is_dir()


def find(directory: str | os.PathLike | None = None) -> Checkout:
    """``directory`` (which must be a checkout), else the working directory if it is one, else the
    checkout euroflow was installed from."""
    if directory is not None:
        path = Path(directory).resolve()
        if not is_checkout(path):
            raise EuroflowError(f"--directory {path}: not a euroflow checkout (no Snakefile, sites/ and profiles/ there)")
        return Checkout(path)
    here = Path.cwd()
    return Checkout(here.resolve() if is_checkout(here) else INSTALLED_FROM)
