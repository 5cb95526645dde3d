"""The sites room: cluster facts (``sites/<name>.yaml``), profile consistency, submission
rendering, ``euroflow site check`` and ``euroflow plan``."""

from euroflow.sites.facts import SCHEMA_PATH, SITES_DIR, load, names, validate

__all__ = ["SCHEMA_PATH", "SITES_DIR", "load", "names", "validate"]
