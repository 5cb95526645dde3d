"""Open (create, upgrade) the provenance SQLite database.

The file lives on a parallel file system (Lustre/GPFS), so it uses the rollback journal,
never WAL, and is created readable by owner and group only. Only the Snakemake head
process writes to it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from euroflow.errors import EuroflowError
from euroflow.provenance.lookup import READ_WAIT_S, DatabaseLocked  # noqa: F401 - DatabaseLocked: raised by open_db

FILE_MODE = 0o660  # reduced by the umask: 0o660 or 0o640, never world-readable
# beside the database: runs whose head could not record everything (the database stayed locked)
UNRECORDED_SUFFIX = ".unrecorded"
# writers queue for the lock rather than fail: an ingest may hold it for seconds at a time
# (EUROFLOW_PROVENANCE_BUSY_TIMEOUT_S changes the wait, e.g. for a slow shared file system)
BUSY_TIMEOUT_MS = int(float(os.environ.get("EUROFLOW_PROVENANCE_BUSY_TIMEOUT_S", "300")) * 1000)


def alembic_config(connection=None) -> Config:
    """Alembic configuration without an ini file; the scripts ship inside this package."""
    cfg = Config()
    cfg.set_main_option("script_location", "euroflow.provenance:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _set_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # first: even reading the journal mode waits for another writer's lock
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=DELETE")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _make_engine(path: Path, *, write: bool) -> Engine:
    # the driver's own wait (default 5 s) applies before any pragma runs
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _set_pragmas)
    if write:
        # A writer takes the write lock when its transaction begins (BEGIN IMMEDIATE), so that
        # concurrent writers queue on busy_timeout instead of failing with "database is locked"
        # when a read lock cannot be upgraded; pysqlite's own BEGIN handling is switched off.
        event.listen(engine, "connect", _autocommit_driver)
        event.listen(engine, "begin", _begin_immediate)
    return engine


def _autocommit_driver(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None


def _begin_immediate(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _migrate(engine: Engine, path: Path) -> None:
    """Bring the schema to head; refuse a database written by a newer euroflow."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    with engine.begin() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current is None and inspect(conn).get_table_names():
            raise EuroflowError(f"{path}: not a euroflow provenance database (it has tables but no schema revision)")
        if current is not None:
            try:
                script.get_revision(current)
            except CommandError:
                raise EuroflowError(
                    f"{path}: provenance schema revision {current} is newer than this euroflow knows "
                    f"(latest {head}); use a newer euroflow to open it"
                ) from None
        if current != head:
            command.upgrade(alembic_config(conn), "head")


def open_db(path: str | os.PathLike, *, create: bool = True, write: bool | None = None, wait_s: float | None = None) -> Engine:
    """Return an engine on the provenance database at ``path``, upgraded to the latest schema.

    ``create=False`` refuses a missing file instead of creating it (for readers). ``write``
    (default: ``create``) makes every transaction take the write lock at its start. While another
    process holds the lock, it waits up to ``wait_s`` (default: the busy timeout for writers,
    ``READ_WAIT_S`` for readers), saying so, then raises :class:`DatabaseLocked`.
    """
    write = create if write is None else write
    path = Path(path).absolute()
    if not path.exists():
        if not create:
            raise EuroflowError(f"{path}: no provenance database at this path")
        _create_file(path)
    elif path.is_dir():
        raise EuroflowError(f"{path}: is a directory, expected a provenance database file")
    from euroflow.provenance.lookup import wait_until_unlocked

    if wait_s is None:
        wait_s = BUSY_TIMEOUT_MS / 1000 if write else READ_WAIT_S
    wait_until_unlocked(path, write=write, seconds=wait_s)
    engine = _make_engine(path, write=write)
    try:
        _migrate(engine, path)
    except (DatabaseError, sqlite3.DatabaseError) as exc:
        engine.dispose()
        reason = getattr(exc, "orig", exc)
        raise EuroflowError(f"{path}: cannot open as a provenance database: {reason}") from None
    except BaseException:
        engine.dispose()
        raise
    if write:
        _replay_unrecorded(engine, path)
    return engine


def note_unrecorded(db: str | os.PathLike, run_id: str | None, sidecars: str) -> None:
    """A run's head ended while the database stayed locked: note where its job sidecars are, so that
    the next writer to open the database replays them (``prov ingest`` does the same by hand)."""
    import json
    import sys
    import time

    with open(f"{db}{UNRECORDED_SUFFIX}", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"run_id": run_id, "sidecars": str(sidecars), "noted_at": time.time()}) + "\n")
    print(f"euroflow provenance: run {run_id}: {db} stayed locked by another process to the end of the run; what it could "
          f"not record is in the job sidecars under {sidecars}, replayed the next time euroflow writes to the database "
          f"(or now: euroflow prov ingest {sidecars} --db {db})", file=sys.stderr, flush=True)


def _replay_unrecorded(engine: Engine, path: Path) -> None:
    import json
    import sys

    from euroflow.provenance.ingest import ingest, settle_run

    note = Path(f"{path}{UNRECORDED_SUFFIX}")
    if not note.is_file():
        return
    entries = [json.loads(line) for line in note.read_text(encoding="utf-8").splitlines() if line.strip()]
    roots = sorted({e["sidecars"] for e in entries if os.path.isdir(e.get("sidecars") or "")})
    if roots:
        ingest(engine, roots)
    for entry in entries:
        if entry.get("run_id"):
            settle_run(engine, entry["run_id"])
    note.unlink()
    print(f"euroflow provenance: recorded {len(entries)} run(s) from their job sidecars (the database had been locked "
          "when they ended)", file=sys.stderr, flush=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
