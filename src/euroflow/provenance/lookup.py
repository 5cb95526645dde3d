"""The two questions a project manager asks most, answered fast: which runs are there
(``list_runs``), and where did this file come from (``lineage``).

Plain ``sqlite3`` and SQL, no SQLAlchemy: ``euroflow prov runs`` and ``prov lineage`` answer
on a database of 100k jobs in well under 200 ms including interpreter start-up, which an
ORM import alone would use up (benchmarks/provenance_queries.py). Every function takes an
open :func:`connect` connection or a SQLAlchemy engine (the rest of the package's currency).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from euroflow.errors import EuroflowError
from euroflow.provenance.locations import on_disk

# the Alembic head this module's SQL is written for (tests check it against migrations/)
SCHEMA_REVISION = "0006_relocatable_runs"
_CHUNK = 30_000  # below SQLite's limit on bound parameters
READ_WAIT_S = 120.0  # how long a reader waits for another process's lock, saying so, before giving up


class DatabaseLocked(EuroflowError):
    """Another process held the provenance database's lock for longer than one would wait."""


def is_locked(exc: BaseException) -> bool:
    """Whether a (SQLAlchemy or sqlite3) error means another connection holds the database's lock."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


def wait_until_unlocked(path: str | os.PathLike, *, write: bool, seconds: float = READ_WAIT_S) -> None:
    """Return once the database at ``path`` can be read (or, with ``write``, written); while another
    process holds its lock, say so once on stderr, and after ``seconds`` stop with one line."""
    import sys
    import time

    deadline = time.monotonic() + seconds
    said = False
    while True:
        connection = sqlite3.connect(path, timeout=1.0, isolation_level=None)
        try:
            if write:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
            else:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        except sqlite3.DatabaseError as exc:
            if not is_locked(exc):
                return  # not a lock (a damaged or foreign file): the caller's own open reports it
            if time.monotonic() > deadline:
                raise DatabaseLocked(
                    f"{path}: another process has held the provenance database's lock for {seconds:.0f} s "
                    f"(a run recording, an ingest; `fuser {path}` names it); try again when it is done"
                ) from None
            if not said:
                print(f"euroflow: waiting for the provenance database {path}: another process holds its lock",
                      file=sys.stderr, flush=True)
                said = True
        finally:
            connection.close()


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """A reading connection to the provenance database at ``path``. A database at an older
    schema revision is first upgraded, a newer or foreign one refused (through ``open_db``,
    imported only then)."""
    path = Path(path).absolute()
    if not path.exists():
        raise EuroflowError(f"{path}: no provenance database at this path")
    if not path.is_file():
        from euroflow.provenance.db import open_db

        open_db(path, create=False).dispose()  # raises the right one-line error
    wait_until_unlocked(path, write=False)
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA busy_timeout=60000")
    try:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        revision = None
    if revision is None or revision[0] != SCHEMA_REVISION:
        connection.close()
        from euroflow.provenance.db import open_db

        open_db(path, create=False).dispose()
        return connect(path)
    return connection


@contextlib.contextmanager
def _cursor_source(db: Any) -> Iterator[sqlite3.Connection]:
    if isinstance(db, sqlite3.Connection):
        yield db
        return
    raw = db.raw_connection()  # a SQLAlchemy engine
    try:
        connection = raw.driver_connection
        previous, connection.row_factory = connection.row_factory, sqlite3.Row
        try:
            yield connection
        finally:
            connection.row_factory = previous
    finally:
        raw.close()


def iso_utc(value: dt.datetime | str | None) -> str | None:
    """A stored time (naive UTC, as a datetime or SQLite's text) in ISO 8601 with its +00:00."""
    if isinstance(value, str):  # raw SQL rows carry SQLite's text form
        value = dt.datetime.fromisoformat(value)
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat()


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def run_summary(run: Any, n_jobs: int, n_failed: int) -> dict[str, Any]:
    """A run row (mapping of column -> value) as the JSON the CLI prints."""
    return {
        "id": run["id"],
        "status": run["status"],
        "started_at": iso_utc(run["started_at"]),
        "ended_at": iso_utc(run["ended_at"]),
        "jobs": n_jobs,
        "failed_attempts": n_failed,
        "git_commit": run["git_commit"],
        "git_dirty": _bool(run["git_dirty"]),
        "config_hash": run["config_hash"],
        "host": run["host"],
        "user": run["user"],
        "site": run["site"],
        "profile": run["profile"],
        "git_diff_sha256": run["git_diff_sha256"],
        "git_remote": run["git_remote"] if "git_remote" in run.keys() else None,
    }


def _day_bound(value: str | dt.date | dt.datetime, *, end: bool) -> str:
    """A date (the whole day) or an ISO time, as SQLite text in the naive UTC runs are stored in."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise EuroflowError(f"{value!r}: not a date (YYYY-MM-DD) or an ISO 8601 time") from None
        whole_day = len(value) == 10
    else:
        whole_day = not isinstance(value, dt.datetime)
        parsed = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if whole_day and end:
        parsed += dt.timedelta(days=1)
    return parsed.isoformat(sep=" ", timespec="microseconds")


_RUNS = (
    "SELECT r.*, c.n, c.failed FROM runs r LEFT JOIN ("
    " SELECT run_id, count(*) AS n, sum(status = 'failed') AS failed FROM jobs GROUP BY run_id"
    ") c ON c.run_id = r.id"
)


def list_runs(
    db: Any,
    *,
    site: str | None = None,
    status: str | None = None,
    since: str | dt.date | None = None,
    until: str | dt.date | None = None,
) -> list[dict[str, Any]]:
    """Runs, oldest first, with job counts; filtered by site, status and start time
    (``since``/``until``: a date includes the whole day)."""
    where, params = [], []
    for clause, value in (("r.site = ?", site), ("r.status = ?", status)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if since is not None:
        where.append("r.started_at >= ?")
        params.append(_day_bound(since, end=False))
    if until is not None:
        where.append("r.started_at < ?")
        params.append(_day_bound(until, end=True))
    sql = _RUNS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.started_at, r.id"
    with _cursor_source(db) as connection:
        return [run_summary(row, row["n"] or 0, row["failed"] or 0) for row in connection.execute(sql, params)]


def _in(sql: str, connection: sqlite3.Connection, ids: Any, *params: Any) -> Iterator[tuple]:
    """Run ``sql`` (with one ``{ids}`` placeholder for an IN list) over ``ids`` in chunks; plain tuples."""
    ids = list(ids)
    cursor = connection.cursor()
    cursor.row_factory = None
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        yield from cursor.execute(sql.format(ids=",".join("?" * len(chunk))), (*params, *chunk))


_LATEST_PRODUCERS = (
    "SELECT g.artifact_id, j.id, max(j.ended_at || printf('%020d', j.id))"
    " FROM generated g JOIN jobs j ON j.id = g.job_id"
    " WHERE g.artifact_id IN ({ids}) AND g.role = 'output' AND j.status = 'success'"
    " GROUP BY g.artifact_id"
)
_JOBS_WITH_RUNS = (
    "SELECT j.id, j.rule, j.wildcards, j.run_id, j.snakemake_jobid, j.ended_at, r.git_commit, r.git_dirty, r.config_hash"
    " FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.id IN ({ids})"
)
_JOB_INPUTS = (
    "SELECT u.job_id, a.id, a.path, a.kind, a.category, a.sha256, a.size FROM used u JOIN artifacts a ON a.id = u.artifact_id"
    " WHERE u.job_id IN ({ids}) AND u.role = 'input'"
)
_ATTEMPTS = (
    "SELECT j.snakemake_jobid, j.attempt, j.status, group_concat(s.slurm_jobid || CASE WHEN s.restart_count > 0 THEN '+' || s.restart_count ELSE '' END) AS slurm"
    " FROM jobs j LEFT JOIN slurm_jobs s ON s.job_id = j.id"
    " WHERE j.run_id = ? AND j.snakemake_jobid IN ({ids}) GROUP BY j.id"
)


_ARTIFACT = "SELECT id, path, kind, category, sha256, size FROM artifacts"
_LATEST_FIRST = " ORDER BY first_seen_at DESC, id DESC"
_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


def _roots(connection: sqlite3.Connection) -> tuple[dict[str, str | None], dict[str, str]]:
    """Per run: the results tree it was written to, and where it is now (its newest location)."""
    written = {row[0]: row[1] for row in connection.execute("SELECT id, root FROM runs")}
    current = dict(written)
    for run_id, root in connection.execute("SELECT run_id, root FROM run_locations ORDER BY id"):
        current[run_id] = root
    return written, current


def _digest(path: str) -> str | None:
    from euroflow.provenance.hashing import observe  # hashlib only

    return observe(path).sha256


def _find(connection: sqlite3.Connection, query: str, root: str | None, known_roots: set[str]) -> tuple[Any, str | None, str]:
    """(artifact row, the root the tree was found under or None, how it was found) for ``query``:
    a path as recorded; a path under a known or given root (stored relative to it); a path in a
    copy of a results tree anywhere (its longest recorded tail); a sha256 (``sha256:`` optional);
    or the content of the file at the path."""
    found = _SHA256.match(query.strip().lower())
    if found:
        row = connection.execute(_ARTIFACT + " WHERE sha256 = ?" + _LATEST_FIRST + " LIMIT 1", (found[1],)).fetchone()
        return row, None, "sha256"
    absolute = os.path.abspath(query)
    row = connection.execute(_ARTIFACT + " WHERE path = ?" + _LATEST_FIRST + " LIMIT 1", (absolute,)).fetchone()
    if row is not None:
        return row, None, "path"
    content: list[str | None] = []

    def best(rows: list[Any]) -> Any:
        if len({r[4] for r in rows}) > 1 and os.path.exists(absolute):
            content.append(content[0] if content else _digest(absolute))
            same = [r for r in rows if r[4] == content[-1]]
            if same:
                return same[0]
        return rows[0]

    for candidate in ([os.path.abspath(root)] if root else []) + sorted(known_roots, key=len, reverse=True):
        relative = os.path.relpath(absolute, candidate)
        if not relative.startswith(".."):
            rows = connection.execute(_ARTIFACT + " WHERE path = ?" + _LATEST_FIRST, (relative,)).fetchall()
            if rows:
                return best(rows), candidate, "path"
    parts = Path(absolute).parts[1:]
    for k in range(len(parts)):  # longest tail first: a tree copied to a place no one recorded
        relative = os.path.join(*parts[k:])
        rows = connection.execute(_ARTIFACT + " WHERE path = ?" + _LATEST_FIRST, (relative,)).fetchall()
        if rows:
            return best(rows), absolute[: -len(relative)].rstrip(os.sep) or os.sep, "path"
    if os.path.exists(absolute):
        digest = content[0] if content else _digest(absolute)
        if digest:
            row = connection.execute(_ARTIFACT + " WHERE sha256 = ?" + _LATEST_FIRST + " LIMIT 1", (digest,)).fetchone()
            if row is not None:
                return row, None, "sha256"
    return None, None, "path"


def lineage(db: Any, path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The tree from the artifact at ``path`` (its most recently recorded content) back to the
    artifacts no recorded job produced: per node its checksum and category, the job that made
    it (rule, wildcards, run, commit, config hash) and every attempt of that job with its Slurm
    job ids. An artifact reached twice is expanded once (``"seen": true``).

    ``path`` may lie in a moved or copied results tree (found by its path relative to the tree, or
    by its content), or be a sha256. Paths in the answer are where the files are now: under the
    tree ``path`` was found in, else under each run's newest recorded location (``"root"``:
    that tree; ``"found_by"``: ``path`` or ``sha256``).

    Walks the graph a level at a time (a few statements per level, not per node): a model trained
    on thousands of shards has a lineage of tens of thousands of nodes."""
    with _cursor_source(db) as connection:
        written, current = _roots(connection)
        known = {r for r in [*written.values(), *current.values()] if r}
        top, found_under, found_by = _find(connection, str(path), str(root) if root else None, known)
        if top is None:
            raise EuroflowError(f"{path}: no such artifact in the provenance database (by path, under any recorded "
                                "results tree, or by content)")

        def describe(row: Any) -> dict[str, Any]:
            return {"stored_path": row[1], "kind": row[2], "category": row[3], "sha256": row[4], "size": row[5]}

        artifacts = {top[0]: describe(top)}
        producer: dict[int, int] = {}
        jobs: dict[int, tuple] = {}
        inputs: dict[int, list[int]] = {}
        frontier = {top[0]}
        while frontier:
            new_jobs = set()
            for artifact_id, job_id, _ in _in(_LATEST_PRODUCERS, connection, frontier):
                producer[artifact_id] = job_id
                if job_id not in jobs:
                    new_jobs.add(job_id)
            frontier = set()
            for row in _in(_JOBS_WITH_RUNS, connection, new_jobs):
                jobs[row[0]], inputs[row[0]] = row, []
            for row in _in(_JOB_INPUTS, connection, new_jobs):
                inputs[row[0]].append(row[1])
                if row[1] not in artifacts:
                    artifacts[row[1]] = describe(row[1:])
                    frontier.add(row[1])
        attempts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        by_run: dict[str, set[int]] = {}
        for job in jobs.values():
            by_run.setdefault(job[3], set()).add(job[4])
        for run_id, jobids in by_run.items():
            for jobid, attempt, status, slurm in _in(_ATTEMPTS + " ORDER BY j.attempt", connection, jobids, run_id):
                attempts.setdefault((run_id, jobid), []).append(
                    {"attempt": attempt, "status": status, "slurm_jobids": sorted(slurm.split(",")) if slurm else []}
                )

    top_run = jobs[producer[top[0]]][3] if top[0] in producer else None

    def tree_of(run_id: str | None) -> str | None:
        """Where a run's tree is for this answer: the tree the query was found in, for the runs that
        wrote that tree; else the run's newest recorded location."""
        if run_id is None:
            return found_under
        if found_under and written.get(run_id) and written.get(run_id) == written.get(top_run):
            return found_under
        return current.get(run_id)

    job_info: dict[int, dict[str, Any]] = {}
    for job_id, (_, rule, wildcards, run_id, jobid, ended_at, commit, dirty, config) in jobs.items():
        job_info[job_id] = {
            "rule": rule,
            "wildcards": json.loads(wildcards) if wildcards else {},
            "run": run_id,
            "attempts": attempts[(run_id, jobid)],
            "ended_at": iso_utc(ended_at),
            "git_commit": commit,
            "git_dirty": _bool(dirty),
            "config_hash": config,
        }
        inputs[job_id].sort(key=lambda i: artifacts[i]["stored_path"])
    expanded: set[int] = set()

    def node(artifact_id: int, consumer_run: str | None) -> dict[str, Any]:
        job_id = producer.get(artifact_id)
        run_id = jobs[job_id][3] if job_id is not None else consumer_run
        out = {"path": on_disk(artifacts[artifact_id]["stored_path"], tree_of(run_id)), **artifacts[artifact_id]}
        if artifact_id in expanded:
            out["seen"] = True
            return out
        expanded.add(artifact_id)
        if job_id is not None:
            out["job"] = job_info[job_id]
            out["inputs"] = [node(i, run_id) for i in inputs[job_id]]
        return out

    answer = node(top[0], top_run)
    answer["root"] = tree_of(top_run)
    answer["found_by"] = found_by
    return answer
