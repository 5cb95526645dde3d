"""What the Snakefile does at parse time, kept here so it is importable and tested."""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from euroflow.errors import EuroflowError

# the run config when `--configfile` names none: the laptop demo
DEMO_CONFIG = Path("workflow") / "configs" / "tiny.yaml"


def put_euroflow_on_path() -> None:
    """Rules call the ``euroflow`` command of the Python that runs Snakemake, activated or not."""
    bin_dir = str(Path(sys.executable).parent)
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if entries[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *entries])


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """A EuroflowError raised while the Snakefile is parsed ends Snakemake with its one line and
    status 1, instead of Snakemake's traceback through the rule files."""
    from euroflow.errors import os_error_message

    try:
        yield
    except EuroflowError as exc:
        print(f"euroflow: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except OSError as exc:  # e.g. a results directory that is read-only or full
        print(f"euroflow: error: {' '.join(os_error_message(exc).split())}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _merge(base: dict, overrides: dict) -> dict:
    """``overrides`` on top of ``base``, mapping by mapping (as Snakemake merges config files)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_run_config(config: dict[str, Any], configfiles: list[str], basedir: str | os.PathLike) -> list[str]:
    """Make Snakemake's ``config`` the run config the user named, validated (in place); returns
    the files it came from.

    With ``--configfile`` (one or several), ``config`` is exactly those files merged, plus any
    ``--config`` values: nothing else is mixed in. Without one it is the demo config
    (``workflow/configs/tiny.yaml`` beside the Snakefile) plus the ``--config`` values.
    """
    from euroflow import config as run_config

    files = [str(path) for path in configfiles]
    if not files:
        demo = Path(basedir) / DEMO_CONFIG
        merged = _merge(run_config.read(demo), config)
        config.clear()
        config.update(merged)
        files = [str(demo)]
    run_config.validate(config, " + ".join(files), Path(basedir) / "workflow" / "schemas" / "config.schema.yaml")
    return files
