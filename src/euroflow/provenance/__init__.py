"""Provenance: every Snakemake run, job, input and output, recorded in SQLite (PROV-shaped).

Capture happens in the Snakemake logger plugin ``snakemake_logger_plugin_euroflow``; the
Snakefile only announces its resolved config with :func:`announce_run_context`.

Imports are lazy: the Snakefile (parsed again in every cluster job) and Snakemake's plugin
discovery should not pay for SQLAlchemy and Alembic unless a database is touched.
"""

from importlib import import_module

_EXPORTS = {
    "announce_run_context": "euroflow.provenance.context",
    "run_context": "euroflow.provenance.context",
    "open_db": "euroflow.provenance.db",
    "session_factory": "euroflow.provenance.db",
    "current_revision": "euroflow.provenance.db",
    "head_revision": "euroflow.provenance.db",
    "Observation": "euroflow.provenance.hashing",
    "observe": "euroflow.provenance.hashing",
    "sha256_file": "euroflow.provenance.hashing",
    "list_runs": "euroflow.provenance.lookup",
    "lineage": "euroflow.provenance.lookup",
    "list_jobs": "euroflow.provenance.queries",
    "run_detail": "euroflow.provenance.queries",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'euroflow.provenance' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
