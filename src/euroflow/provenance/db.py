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

FILE_MODE = 0o660  # reduced by the umask: 0o660 or 0o640, never world-readable
# writers queue for the lock rather than fail: an ingest may hold it for seconds at a time
BUSY_TIMEOUT_MS = 300_000


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
    cursor.execute("PRAGMA journal_mode=DELETE")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _create_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _make_engine(path: Path, *, write: bool) -> Engine:
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
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


def open_db(path: str | os.PathLike, *, create: bool = True, write: bool | None = None) -> Engine:
    """Return an engine on the provenance database at ``path``, upgraded to the latest schema.

    ``create=False`` refuses a missing file instead of creating it (for readers). ``write``
    (default: ``create``) makes every transaction take the write lock at its start.
    """
    write = create if write is None else write
    path = Path(path).absolute()
    if not path.exists():
        if not create:
            raise EuroflowError(f"{path}: no provenance database at this path")
        _create_file(path)
    elif path.is_dir():
        raise EuroflowError(f"{path}: is a directory, expected a provenance database file")
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
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
