"""Turn Snakemake 9 log events into provenance records.

Fed by the logger plugin ``snakemake_logger_plugin_euroflow`` (one thread, in order), so
no rule has to remember to record anything. Events used:

- ``workflow_started``: the run (id = Snakemake's workflow id), command, host, versions;
- a record carrying ``euroflow_run_context`` (sent by :func:`announce_run_context` from the
  Snakefile's ``onstart``): the resolved run config, its hash and the database path;
- ``job_info``: a job attempt starts; its inputs are hashed (``used`` edges);
- ``job_finished``: it succeeded; outputs, logs and benchmark are hashed (``generated``);
- ``job_error`` / ``group_error``: it failed; the preceding ``error`` event gives the reason;
- ``error``: workflow-level errors; the run ends (status, time) when the handler closes.

Until the database path is known (from the plugin setting or the run context), events are
kept in memory and replayed.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from euroflow.errors import EuroflowError
from euroflow.provenance import recorder, sidecar, slurm_accounting
from euroflow.provenance.context import RUN_CONTEXT_ATTR
from euroflow.provenance.db import DatabaseLocked, open_db, session_factory
from euroflow.provenance.models import Run
from euroflow.provenance.environment import (
    git_diff_sha256,
    git_remote_url,
    git_state,
    package_versions,
    redact_command,
    site_name,
    snakemake_profile,
    snapshot,
)
from euroflow.provenance.hashing import DigestCache, Observation, observe
from euroflow.provenance.lookup import is_locked

# after an event found the database locked past the busy timeout, the next try comes this much later
RETRY_LOCKED_S = 30.0

# Snakemake appends " (label)" to some file names in job events (snakemake/io/fmt.py).
_ANNOTATED = re.compile(
    r"^(?P<path>.+?) \((?P<label>pipe|service|nodelocal|update|before update|access: [^,)]+|cached)?"
    r"(?:, )?(?P<storage>retrieve from storage|only provide storage uri|send to storage|in storage)?\)$"
)
_EXIT_STATUS = re.compile(r"non-zero exit status (-?\d+)")
# e.g. MissingOutputException: "... in rule noout in file ...: Job 0 completed successfully, but ..."
_JOB_IN_ERROR = re.compile(r"\bin rule (?P<rule>\S+) in file .*?\bJob (?P<jobid>\d+)\b", re.DOTALL)


@dataclass
class _JobState:
    db_id: int
    rule: str
    started: float
    products: list[tuple[str, str]]  # (role, path as Snakemake names it)
    logs: list[str]
    wildcards: dict[str, str] = field(default_factory=dict)
    sidecar: str | None = None  # where the job writes its own record (absolute)
    done: bool = False
    failed: bool = False


@dataclass
class _Error:
    message: str
    exception: str | None
    created: float
    consumed: bool = False


@dataclass
class _RunState:
    run_id: str
    workdir: str
    jobs: dict[int, _JobState] = field(default_factory=dict)
    errors: list[_Error] = field(default_factory=list)


def parse_file_name(name: str) -> tuple[str, str] | None:
    """(kind, path) for a file name from a job event; None for a not-yet-known checkpoint
    target. kind is "file" (hash it), "pipe" (no content on disk) or "storage" (a URI)."""
    name = str(name)
    if name == "<TBD>":
        return None
    match = _ANNOTATED.match(name)
    if match and (match["label"] or match["storage"]):
        if match["storage"]:
            return "storage", match["path"]
        if match["label"] in ("pipe", "service"):
            return "pipe", match["path"]
        return "file", match["path"]
    return "file", name


class RunCapture:
    """Records one Snakemake run from its log events. ``db`` may come later (run context)."""

    def __init__(self, db: str | os.PathLike | None = None) -> None:
        self._engine: Engine | None = open_db(db) if db is not None else None
        self._sessions = session_factory(self._engine) if self._engine is not None else None
        self._pending: list[tuple[str | None, dict[str, Any], float]] = []
        self._backlog: list[tuple[str, dict[str, Any], float]] = []
        self._locked_since: float | None = None
        self._db_path: str | None = str(db) if db is not None else None
        self._run: _RunState | None = None
        self._cache = DigestCache()
        self._context: dict[str, Any] | None = None
        self._workflow_id: str | None = None  # known before the run can be written
        self.failures: list[str] = []  # events that could not be recorded

    @property
    def run_id(self) -> str | None:
        return self._run.run_id if self._run else self._workflow_id

    @property
    def unrecorded_jobs(self) -> int:
        """Job events held back because no database path ever arrived."""
        return sum(1 for event, _, _ in self._pending if event == "job_info")

    def handle(self, event: str | None, fields: dict[str, Any], created: float) -> None:
        """Process one log event: ``event`` is the Snakemake LogEvent value (or None),
        ``fields`` the record's attributes, ``created`` its POSIX time.

        An event that finds the database locked by another process past the busy timeout is
        kept, in order with every later one, and recorded once the lock is free (retried at most
        every ``RETRY_LOCKED_S``, and at the end of the run): a long-held lock loses nothing."""
        try:
            context = fields.get(RUN_CONTEXT_ATTR)
            if context is not None:
                self._on_context(context)
                return
            if event not in _HANDLERS:
                return
            if event == "workflow_started":
                self._workflow_id = str(fields["workflow_id"])
            if self._engine is None:
                self._pending.append((event, fields, created))
                if self._db_path is not None and self._retry_due():  # the database was locked when the run began
                    self._open(wait_s=1.0)
                return
            self._backlog.append((event, fields, created))
            self._drain()
        except Exception as exc:
            self.failures.append(f"{event or 'run context'}: {exc.__class__.__name__}: {exc}")
            raise

    @property
    def backlog(self) -> int:
        """Events kept back because the database was locked."""
        return len(self._backlog)

    def _retry_due(self) -> bool:
        return self._locked_since is None or time.monotonic() - self._locked_since >= RETRY_LOCKED_S

    def _open(self, wait_s: float | None) -> bool:
        """Open the database named by the run context; a lock held past ``wait_s`` leaves the events
        pending (tried again later). Once open, the pending events and the context are recorded."""
        try:
            self._engine = open_db(self._db_path, wait_s=wait_s)
        except DatabaseLocked:
            self._locked_since = time.monotonic()
            return False
        self._sessions = session_factory(self._engine)
        self._locked_since = None
        pending, self._pending = self._pending, []
        self._backlog = [*pending, (CONTEXT_EVENT, {}, 0.0), *self._backlog]
        self._drain(force=True)
        return True

    def _drain(self, force: bool = False) -> None:
        """Record the kept events in order; stop at the first that finds the database locked."""
        if not force and not self._retry_due():
            return
        while self._backlog:
            event, fields, created = self._backlog[0]
            try:
                _HANDLERS[event](self, fields, created)
            except Exception as exc:
                if is_locked(exc):
                    self._locked_since = time.monotonic()
                    return
                self._backlog.pop(0)
                raise
            self._backlog.pop(0)
            self._locked_since = None

    def close(self, now: float | None = None) -> str | None:
        """End the run: its status is failed (a job or the workflow failed), incomplete
        (jobs never finished, or events could not be recorded) or success. Returns the
        status (None if no run was seen)."""
        now = time.time() if now is None else now
        if self._engine is None and self._db_path is not None:
            self._open(wait_s=None)
            if self._engine is None:
                self._remember_unrecorded()
                return None
        if self._engine is not None and self._backlog:
            try:
                self._drain(force=True)
            except Exception as exc:  # noqa: BLE001 - reported, and the run is still closed below
                self.failures.append(f"{exc.__class__.__name__}: {exc}")
            if self._backlog:  # locked to the end: the job sidecars hold the rest; the next writer replays them
                self._remember_unrecorded()
                self._engine.dispose()
                return None
        if self._run is None or self._engine is None:
            if self._engine is not None:
                self._engine.dispose()
            return None
        state = self._run
        unfinished = [job for job in state.jobs.values() if not job.done]
        unattributed = [e for e in state.errors if not e.consumed]
        # a job's latest attempt counts: a failure that a retry repaired does not fail the run
        if any(job.failed for job in state.jobs.values()) or unattributed:
            status = "failed"
        elif unfinished or self.failures:
            status = "incomplete"
        else:
            status = "success"
        ended = recorder.utc(now)
        try:  # how the Slurm allocations ended, their time, memory and energy
            with self._sessions.begin() as session:
                slurm_accounting.fill_from_sacct(session, state.run_id)
        except Exception as exc:  # noqa: BLE001 - accounting is a supplement, never a reason to lose the run
            self.failures.append(f"sacct: {exc.__class__.__name__}: {exc}")
        with self._sessions.begin() as session:
            for job in unfinished:
                reason = unattributed[0].message if unattributed else "no end event before the run ended"
                recorder.fail_job(
                    session, job.db_id, ended, error=reason, status="incomplete",
                    outputs=self._observe(job.logs, "log"),
                )
                job.done = True
            error = unattributed[0].message if unattributed else None
            if self.failures:
                note = f"provenance capture failed for {len(self.failures)} event(s), first: {self.failures[0]}"
                error = f"{error}\n{note}" if error else note
            recorder.end_run(session, state.run_id, ended, status, error)
        self._engine.dispose()
        return status

    def _remember_unrecorded(self) -> None:
        """Leave a note beside the database naming the run's results tree: its job sidecars hold
        what could not be recorded, and the next writer that opens the database replays them."""
        from euroflow.provenance.db import note_unrecorded

        where = (self._context or {}).get("root") or (self._run.workdir if self._run else os.getcwd())
        note_unrecorded(self._db_path or self._engine.url.database, self.run_id, where)

    # -- events ---------------------------------------------------------------------------

    def _on_context(self, context: dict[str, Any]) -> None:
        self._context = context
        if self._engine is None and context.get("db"):
            self._db_path = context["db"]
            self._open(wait_s=None)
            return
        if self._engine is not None:
            self._backlog.append((CONTEXT_EVENT, {}, 0.0))
            self._drain()

    def _apply_context(self) -> None:
        if self._run is None or self._context is None:
            return
        with self._sessions.begin() as session:
            recorder.set_run_config(
                session,
                self._run.run_id,
                config_json=self._context["config_json"],
                config_hash=self._context["config_hash"],
                config_path=self._context.get("config_path"),
                root=self._context.get("root"),
            )

    def _on_workflow_started(self, fields: dict[str, Any], created: float) -> None:
        workdir = os.getcwd()
        self._run = _RunState(run_id=str(fields["workflow_id"]), workdir=workdir)
        snakefile = fields.get("snakefile_main")
        source_dir = os.path.dirname(os.path.abspath(str(snakefile))) if snakefile else workdir
        commit, dirty = git_state(source_dir)
        profile = snakemake_profile(fields.get("cmd"))
        with self._sessions.begin() as session:
            if session.get(Run, self._run.run_id) is None:  # else recorded by an earlier try of this event
                self._start_run(session, fields, created, workdir, snakefile, source_dir, commit, dirty, profile)
        self._apply_context()

    def _start_run(self, session, fields: dict[str, Any], created: float, workdir: str, snakefile: Any, source_dir: str,
                   commit: str | None, dirty: bool | None, profile: str | None) -> None:
        recorder.start_run(
            session,
            self._run.run_id,
            recorder.utc(created),
            workdir=workdir,
            snakefile=str(snakefile) if snakefile else None,
            command=redact_command(fields.get("cmd")),
            host=fields.get("host"),
            user=fields.get("user"),
            snakemake_version=fields.get("snakemake_version"),
            configfiles=[str(p) for p in fields.get("configfiles") or []],
            snakemake_config_md5=fields.get("config_md5"),
            git_commit=commit,
            git_dirty=dirty,
            git_diff_sha256=git_diff_sha256(source_dir) if dirty else None,
            git_remote=git_remote_url(source_dir),
            site=site_name(profile, os.path.join(source_dir, "sites")),
            profile=profile,
            packages=package_versions(),
            environment=snapshot(),
            pid=os.getpid(),
        )
        # a run in this directory whose head was killed never ended: say so now
        recorder.interrupt_stale_runs(
            session, noticed_by=f"run {self._run.run_id}", host=fields.get("host"), workdir=workdir, exclude=self._run.run_id
        )

    def _on_job_info(self, fields: dict[str, Any], created: float) -> None:
        if self._run is None:
            return
        jobid = int(fields["jobid"])
        inputs = self._observe(fields.get("input") or [], "input")
        products = [("output", str(f)) for f in fields.get("output") or []]
        if fields.get("benchmark"):
            products.append(("benchmark", str(fields["benchmark"])))
        logs = [str(f) for f in fields.get("log") or []]
        wildcards = {str(k): str(v) for k, v in dict(fields.get("wildcards") or {}).items()}
        with self._sessions.begin() as session:
            job = recorder.start_job(
                session,
                self._run.run_id,
                jobid,
                rule=str(fields["rule_name"]),
                started_at=recorder.utc(created),
                wildcards=wildcards,
                shellcmd=fields.get("shellcmd"),
                threads=fields.get("threads"),
                is_local=fields.get("local"),
                inputs=inputs,
            )
            self._run.jobs[jobid] = _JobState(
                job.id, job.rule, created, products, logs, wildcards, self._sidecar_path(products, logs)
            )

    def _on_job_finished(self, fields: dict[str, Any], created: float) -> None:
        job = self._job(fields.get("job_id"))
        if job is None:
            return
        attempt = self._sidecar_attempt(job)
        outputs = []
        for role, name in job.products:
            outputs += self._observe([name], role)
        outputs += self._observe(job.logs, "log")
        with self._sessions.begin() as session:
            recorder.finish_job(session, job.db_id, recorder.utc(created), outputs)
            if attempt is not None:
                recorder.apply_sidecar(session, job.db_id, attempt, job.sidecar)
        job.done = True

    def _on_job_error(self, fields: dict[str, Any], created: float) -> None:
        job = self._job(fields.get("jobid"))
        if job is None or job.done:
            return
        parts = [str(fields["rule_msg"])] if fields.get("rule_msg") else []
        cause = self._cause_for(job)
        if cause is not None:
            parts.insert(0, cause.message)
        for key, value in dict(fields.get("aux") or {}).items():
            parts.append(f"{key}: {value}")
        # the event's log list adds executor logs (e.g. the Slurm job's log) to the rule's own
        logs = list(dict.fromkeys([*job.logs, *(str(f) for f in fields.get("log") or [])]))
        self._fail(job, "\n".join(parts) or f"job {fields.get('jobid')} of rule {job.rule} failed", created, logs)

    def _on_group_error(self, fields: dict[str, Any], created: float) -> None:
        for info in fields.get("job_error_info") or []:
            merged = dict(info)
            if not merged.get("rule_msg"):
                merged["rule_msg"] = fields.get("msg")
            self._on_job_error(merged, created)

    def _on_error(self, fields: dict[str, Any], created: float) -> None:
        if self._run is None:
            return
        message = str(fields.get("msg") or fields.get("message") or "")
        error = _Error(message, fields.get("exception"), created)
        self._run.errors.append(error)
        # errors found after a job ran (missing outputs) come without a job_error event
        named = _JOB_IN_ERROR.search(message)
        job = self._job(named["jobid"]) if named else None
        if job is not None and not job.done and job.rule == named["rule"]:
            error.consumed = True
            self._fail(job, message, created)

    def _fail(self, job: _JobState, error: str, created: float, logs: list[str] | None = None) -> None:
        match = _EXIT_STATUS.search(error)
        attempt = self._sidecar_attempt(job)
        with self._sessions.begin() as session:
            recorder.fail_job(
                session,
                job.db_id,
                recorder.utc(created),
                error=error,
                exit_status=int(match[1]) if match else None,
                outputs=self._observe(job.logs if logs is None else logs, "log"),
            )
            if attempt is not None:
                recorder.apply_sidecar(session, job.db_id, attempt, job.sidecar)
        job.done = job.failed = True

    # -- helpers --------------------------------------------------------------------------

    def _job(self, jobid: Any) -> _JobState | None:
        if self._run is None or jobid is None:
            return None
        return self._run.jobs.get(int(jobid))

    def _cause_for(self, job: _JobState) -> _Error | None:
        """The latest unattributed error event logged since the job started: Snakemake logs
        the exception (with the exit status) just before the job_error event."""
        for error in reversed(self._run.errors):
            if not error.consumed and error.created >= job.started:
                error.consumed = True
                return error
        return None

    def _sidecar_path(self, products: list[tuple[str, str]], logs: list[str]) -> str | None:
        parsed = [parse_file_name(name) for role, name in products if role == "output"]
        outputs = [found[1] for found in parsed if found is not None and found[0] == "file"]
        path = sidecar.sidecar_path(outputs, logs)
        return None if path is None else os.path.join(self._run.workdir, path)

    def _sidecar_attempt(self, job: _JobState) -> dict[str, Any] | None:
        """This attempt as the job recorded it (its latest in this run), seeding the digest
        cache with the outputs it hashed; None when the job wrote no sidecar."""
        if job.sidecar is None or not os.path.exists(job.sidecar):
            return None
        try:
            attempts = sidecar.read(job.sidecar)["attempts"]
        except EuroflowError as exc:
            self.failures.append(str(exc))
            return None
        mine = [
            a for a in attempts
            if a.get("run_id") == self._run.run_id and a["rule"] == job.rule and a["wildcards"] == job.wildcards
        ]
        if not mine:
            return None
        self._cache.seed(mine[-1].get("digests") or [])
        return mine[-1]

    def _observe(self, names: list[Any], role: str) -> list[tuple[str, Observation]]:
        observed = []
        for name in names:
            parsed = parse_file_name(name)
            if parsed is None:
                continue
            kind, path = parsed
            if kind == "file":
                observation = observe(os.path.join(self._run.workdir, path), self._cache)
            else:
                full = path if kind == "storage" else os.path.abspath(os.path.join(self._run.workdir, path))
                observation = Observation(full, kind, None, None)
            observed.append((role, observation))
        return observed


CONTEXT_EVENT = "euroflow_run_context"
_HANDLERS = {
    CONTEXT_EVENT: lambda capture, fields, created: capture._apply_context(),
    "workflow_started": RunCapture._on_workflow_started,
    "job_info": RunCapture._on_job_info,
    "job_finished": RunCapture._on_job_finished,
    "job_error": RunCapture._on_job_error,
    "group_error": RunCapture._on_group_error,
    "error": RunCapture._on_error,
}
