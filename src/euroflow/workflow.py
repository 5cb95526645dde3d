"""What the Snakefile does at parse time, kept here so it is importable and tested."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def put_euroflow_on_path() -> None:
    """Rules call the ``euroflow`` command of the Python that runs Snakemake, activated or not."""
    bin_dir = str(Path(sys.executable).parent)
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if entries[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *entries])
