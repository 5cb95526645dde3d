"""Snakemake logger plugin ``euroflow``: every run's jobs go into the provenance database.

Enable with ``--logger euroflow`` (profiles/local does). The database path comes from
``--logger-euroflow-db PATH`` (or ``SNAKEMAKE_LOGGER_EUROFLOW_DB``) or, when that is not
given, from the run context the Snakefile's ``onstart`` announces
(:func:`euroflow.provenance.announce_run_context`); the setting wins when both are given. Snakemake runs this handler on its own
thread and only in the head process (never in ``--mode subprocess/remote`` jobs), and not
at all in dry runs.
"""

import os
import sys
import time
import weakref
from dataclasses import dataclass, field
from logging import LogRecord
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

from euroflow.errors import EuroflowError

ACTIVE_HANDLERS: "weakref.WeakSet[LogHandler]" = weakref.WeakSet()
_PREFIX = "euroflow provenance"


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    db: Optional[str] = field(
        default=None,
        metadata={
            "help": "Provenance SQLite database (created if missing). Default: the 'db' the "
            "Snakefile's onstart passes to euroflow.provenance.announce_run_context.",
            "env_var": True,
            "required": False,
        },
    )


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        self.capture = None
        if self.common_settings.dryrun:
            return
        quiet = {getattr(q, "name", str(q)).lower() for q in (self.common_settings.quiet or ())}
        if "progress" in quiet:
            raise WorkflowError(
                f"{_PREFIX}: --quiet (progress) suppresses Snakemake's job_finished events, so jobs "
                "cannot be recorded; use --quiet rules or no --quiet"
            )
        db = getattr(self.settings, "db", None)
        path = os.path.abspath(os.path.expanduser(os.path.expandvars(db))) if db else None
        # imported here: Snakemake imports every plugin module on each start, jobs included
        from euroflow.provenance.capture import RunCapture

        try:
            self.capture = RunCapture(path)
        except EuroflowError as exc:
            # WorkflowError: Snakemake prints it as one message, without a traceback
            raise WorkflowError(f"{_PREFIX}: {exc}") from None
        ACTIVE_HANDLERS.add(self)

    def emit(self, record: LogRecord) -> None:
        if self.capture is None:
            return
        event = getattr(record, "event", None)
        try:
            self.capture.handle(None if event is None else str(event), record.__dict__, record.created)
        except Exception as exc:  # noqa: BLE001 - a failed record must not stop the logger thread
            self._report(f"could not record {event or 'record'}: {exc.__class__.__name__}: {exc}")

    def close(self) -> None:
        capture, self.capture = self.capture, None
        ACTIVE_HANDLERS.discard(self)
        if capture is not None:
            try:
                if capture.unrecorded_jobs:
                    self._report(
                        "no database path: pass --logger-euroflow-db or call "
                        "euroflow.provenance.announce_run_context(config, db=...) in onstart"
                    )
                capture.close(time.time())
            except Exception as exc:  # noqa: BLE001
                self._report(f"could not close the run: {exc.__class__.__name__}: {exc}")
            if capture.failures:
                self._report(f"run {capture.run_id}: {len(capture.failures)} event(s) not recorded, provenance is incomplete")
        super().close()

    def _report(self, message: str) -> None:
        print(f"{_PREFIX}: {' '.join(message.split())}", file=sys.stderr, flush=True)

    @property
    def writes_to_stream(self) -> bool:
        return False

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        # every event is needed, whatever --quiet hides from the terminal
        return True

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
