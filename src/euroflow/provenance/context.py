"""Tell the provenance logger which run config (and database) this Snakemake run uses.

Called from the Snakefile's ``onstart`` (head process, real runs only, before any job is
scheduled). The context travels in-band as a Snakemake log record, so there is no side
file to go stale and no race with the logger thread.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from euroflow.config import config_hash
from euroflow.provenance.environment import REDACTED, is_secret
from euroflow.errors import EuroflowError

RUN_CONTEXT_ATTR = "euroflow_run_context"
RUN_ID_WAIT_S = 10.0
SNAKEMAKE_LOGGER = "snakemake.logging"
PLUGIN_MODULE = "snakemake_logger_plugin_euroflow"


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if is_secret(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def canonical_config_json(config: dict) -> str:
    """The text whose sha256 is :func:`euroflow.config.config_hash`, with the values of
    secret-looking keys (``*_token``, ``*_password``, …) redacted (the hash is of the original)."""
    return json.dumps(_redacted(config), sort_keys=True, separators=(",", ":"), default=str)


def run_context(
    config: dict, *, db: str | os.PathLike | None = None, config_path: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``root``: the results tree; paths under it are recorded relative to it (default: the config's
    ``paths.results``, when the config has one)."""
    if root is None:
        root = (config.get("paths") or {}).get("results")
    context = {
        "config_json": canonical_config_json(config),
        "config_hash": config_hash(config),
        "config_path": os.path.abspath(config_path) if config_path else None,
        "db": os.path.abspath(db) if db else None,
        "root": os.path.abspath(root) if root else None,
    }
    return context


def announce_run_context(
    config: dict,
    *,
    db: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
    logger: logging.Logger | None = None,
    require_logger: bool = True,
) -> dict[str, Any]:
    """Send the resolved run config (and the provenance database path) to the logger plugin.

    Raises if the plugin is not active in this process (``--logger euroflow`` missing), so a
    real run is never left unrecorded. The database is opened here first, in Snakemake's main
    thread, so that a database of a newer schema, or an unwritable path, stops the workflow
    before any job runs.
    """
    plugin = sys.modules.get(PLUGIN_MODULE)
    if require_logger and not (plugin is not None and len(plugin.ACTIVE_HANDLERS)):
        raise EuroflowError(
            "euroflow provenance: the Snakemake logger plugin is not active; "
            "run snakemake with --logger euroflow (profiles/local sets it)"
        )
    context = run_context(config, db=db, config_path=config_path)
    if plugin is not None:
        _export_run_id(plugin)
    from euroflow.provenance.sidecar import RUN_ROOT_VARIABLE

    if context["root"]:  # every job's sidecar records it (for runs known only from sidecars)
        os.environ[RUN_ROOT_VARIABLE] = context["root"]
    if context["db"]:
        from euroflow.provenance.db import DatabaseLocked, open_db  # SQLAlchemy/Alembic only when needed

        try:
            open_db(context["db"]).dispose()
        except DatabaseLocked:  # the run goes on; the logger records it once the lock is free
            print(f"euroflow provenance: {context['db']} is locked by another process; the run starts, and is recorded "
                  "once the lock is released", file=sys.stderr, flush=True)
    (logger or logging.getLogger(SNAKEMAKE_LOGGER)).info(
        f"euroflow provenance: config sha256 {context['config_hash'][:16]}, database {context['db'] or '(plugin setting)'}",
        extra={RUN_CONTEXT_ATTR: context},
    )
    return context


def _export_run_id(plugin: Any) -> None:
    """Put the run id in the environment every job inherits (threads here, sbatch's exported
    environment on Slurm), so that each job's sidecar names its run. The logger thread sets the
    id on ``workflow_started``, which Snakemake logs before ``onstart``: wait for it briefly."""
    from euroflow.provenance.sidecar import RUN_ID_VARIABLE

    deadline = time.monotonic() + RUN_ID_WAIT_S
    while True:
        ids = [h.capture.run_id for h in list(plugin.ACTIVE_HANDLERS) if h.capture is not None and h.capture.run_id]
        if ids or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if ids:
        os.environ[RUN_ID_VARIABLE] = ids[0]
    else:
        os.environ.pop(RUN_ID_VARIABLE, None)
