"""The provenance database: migrations, refusal of newer schemas, file mode, journal mode."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from euroflow.errors import EuroflowError
from euroflow.provenance import cli
from euroflow.provenance.db import alembic_config, current_revision, head_revision, open_db
from euroflow.provenance.models import Base


def base_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    [base] = script.get_bases()
    return base


def test_there_is_history_to_upgrade():
    assert base_revision() != head_revision()


def test_database_at_base_revision_is_upgraded_on_open(tmp_path):
    db = tmp_path / "old.sqlite"
    old = create_engine(f"sqlite:///{db}")
    with old.begin() as conn:
        command.upgrade(alembic_config(conn), base_revision())
    with old.begin() as conn:
        conn.exec_driver_sql(
            "insert into runs (id, status, started_at, workdir) values ('old-run', 'success', '2025-01-01 00:00:00', '/w')"
        )
    old.dispose()
    assert "run_packages" not in _tables(db)

    engine = open_db(db)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert "run_packages" in _tables(db)
    con = sqlite3.connect(db)
    assert con.execute("select id, status from runs").fetchall() == [("old-run", "success")]
    con.close()


def test_newer_schema_is_refused_with_one_line(tmp_path, capsys):
    db = tmp_path / "new.sqlite"
    open_db(db).dispose()
    con = sqlite3.connect(db)
    con.execute("update alembic_version set version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    with pytest.raises(EuroflowError) as info:
        open_db(db)
    message = str(info.value)
    assert "\n" not in message
    assert str(db) in message and "9999_from_the_future" in message and "newer" in message

    assert cli.main(["runs", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "9999_from_the_future" in err


def test_foreign_sqlite_and_non_sqlite_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("create table t (x)")
    con.close()
    with pytest.raises(EuroflowError, match="not a euroflow provenance database"):
        open_db(foreign)
    text = tmp_path / "notes.sqlite"
    text.write_text("this is not a database, just some text that is long enough to have a header" * 10)
    with pytest.raises(EuroflowError, match="cannot open"):
        open_db(text)


def test_reader_does_not_create(tmp_path):
    with pytest.raises(EuroflowError, match="no provenance database"):
        open_db(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()


@pytest.mark.parametrize("umask, expected", [(0o022, 0o640), (0o002, 0o660), (0o000, 0o660)])
def test_file_is_created_owner_and_group_only(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        open_db(tmp_path / "sub" / "prov.sqlite").dispose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "sub" / "prov.sqlite").stat().st_mode) == expected


def test_wal_database_is_switched_back_to_rollback_journal(tmp_path):
    db = tmp_path / "prov.sqlite"
    con = sqlite3.connect(db)
    assert con.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
    con.close()
    engine = open_db(db)
    with engine.begin() as conn:
        conn.exec_driver_sql("insert into runs (id, status, started_at, workdir) values ('r', 'running', '2025-01-01', '/')")
        assert conn.exec_driver_sql("pragma journal_mode").scalar() == "delete"
    engine.dispose()
    con = sqlite3.connect(db)
    assert con.execute("pragma journal_mode").fetchone()[0] == "delete"
    con.close()
    assert not (tmp_path / "prov.sqlite-wal").exists()


def test_migrations_build_exactly_the_orm_schema(tmp_path):
    engine = open_db(tmp_path / "prov.sqlite")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def _tables(db) -> set[str]:
    con = sqlite3.connect(db)
    names = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    con.close()
    return names


def test_database_of_the_previous_schema_version_keeps_its_records(tmp_path):
    script = ScriptDirectory.from_config(alembic_config())
    previous = script.get_revision(head_revision()).down_revision
    db = tmp_path / "previous.sqlite"
    old = create_engine(f"sqlite:///{db}")
    with old.begin() as conn:
        command.upgrade(alembic_config(conn), previous)
        conn.exec_driver_sql(
            "insert into runs (id, status, started_at, workdir) values ('r1', 'success', '2026-01-01 00:00:00', '/w')"
        )
        conn.exec_driver_sql(
            "insert into jobs (id, run_id, snakemake_jobid, attempt, rule, wildcards, status, started_at)"
            " values (1, 'r1', 3, 1, 'pretrain', '{}', 'success', '2026-01-01 00:00:01')"
        )
        conn.exec_driver_sql(
            "insert into artifacts (id, path, sha256, size, kind, first_seen_at)"
            " values (1, '/w/results/x/quantized/x-Q8_0.gguf', 'ab', 2, 'file', '2026-01-01 00:00:02')"
        )
        conn.exec_driver_sql("insert into generated (job_id, artifact_id, role, at) values (1, 1, 'output', '2026-01-01 00:00:02')")
    old.dispose()

    engine = open_db(db)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    con = sqlite3.connect(db)
    assert con.execute("select id, status, site from runs").fetchall() == [("r1", "success", None)]
    assert con.execute("select rule, status, host from jobs").fetchall() == [("pretrain", "success", None)]
    assert con.execute("select path, sha256, category from artifacts").fetchall() == [
        ("/w/results/x/quantized/x-Q8_0.gguf", "ab", None)
    ]
    assert con.execute("select count(*) from generated").fetchone() == (1,)
    assert con.execute("select count(*) from slurm_jobs").fetchone() == (0,)
    assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    con.close()


def test_fast_readers_know_the_current_schema():
    from euroflow.provenance.lookup import SCHEMA_REVISION

    assert SCHEMA_REVISION == head_revision()


def test_fast_reader_upgrades_an_older_database_first(tmp_path):
    from euroflow.provenance.lookup import connect, list_runs

    script = ScriptDirectory.from_config(alembic_config())
    db = tmp_path / "older.sqlite"
    old = create_engine(f"sqlite:///{db}")
    with old.begin() as conn:
        command.upgrade(alembic_config(conn), script.get_revision(head_revision()).down_revision)
        conn.exec_driver_sql("insert into runs (id, status, started_at, workdir) values ('r', 'success', '2026-01-01 00:00:00', '/w')")
    old.dispose()
    connection = connect(db)
    assert [r["id"] for r in list_runs(connection)] == ["r"]
    connection.close()
    assert current_revision(open_db(db, create=False)) == head_revision()


def _run_with_artifacts(db, n: int = 400) -> str:
    import datetime as dt

    from euroflow.provenance import recorder
    from euroflow.provenance.db import session_factory
    from euroflow.provenance.hashing import Observation

    engine = open_db(db)
    now = dt.datetime(2026, 12, 1, 12, 0)
    with session_factory(engine).begin() as session:
        recorder.start_run(session, "run-1", now, workdir="/w", host="h", pid=1)
        outputs = [("output", Observation(f"/w/results/file-{i:04d}.txt", "file", f"{i:064x}", i)) for i in range(n)]
        job = recorder.start_job(session, "run-1", 1, rule="r", started_at=now)
        recorder.finish_job(session, job.id, now, outputs)
    engine.dispose()
    return "run-1"


def test_verify_refuses_a_database_that_fails_its_integrity_check(tmp_path):
    db = tmp_path / "prov.sqlite"
    run_id = _run_with_artifacts(db)
    page = 4096
    data = bytearray(db.read_bytes())
    assert len(data) > 50 * page
    data[40 * page + 1000 : 40 * page + 1064] = b"\x7f" * 64  # 64 bytes of one page: rows fall out of their indexes
    db.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "euroflow.cli", "prov", "verify", run_id, "--db", str(db)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"euroflow: error: {db}: the provenance database fails SQLite's integrity check (row ")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_run_whose_head_died_is_marked_interrupted(tmp_path):
    import datetime as dt

    from euroflow.provenance import recorder
    from euroflow.provenance.db import session_factory

    engine = open_db(tmp_path / "prov.sqlite")
    now = dt.datetime(2026, 12, 1, 12, 0)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        recorder.start_run(session, "dead", now, workdir="/a", host="here", pid=111)
        recorder.start_job(session, "dead", 7, rule="pretrain", started_at=now + dt.timedelta(minutes=5))
        recorder.start_run(session, "alive", now, workdir="/b", host="here", pid=222)
        recorder.start_run(session, "elsewhere", now, workdir="/c", host="there", pid=333)
    with sessions.begin() as session:
        stopped = recorder.interrupt_stale_runs(session, noticed_by="a test", host="here", alive=lambda pid, started: pid == 222)
    assert stopped == ["dead"]
    with sessions.begin() as session:
        from euroflow.provenance.models import Run

        dead = session.get(Run, "dead")
        assert dead.status == "interrupted" and dead.ended_at == now + dt.timedelta(minutes=5)
        assert "pid 111 on here" in dead.error and "noticed by a test" in dead.error
        assert [job.status for job in dead.jobs] == ["interrupted"]
        assert session.get(Run, "alive").status == "running" and session.get(Run, "elsewhere").status == "running"
        # a new run in the workdir of a run on another host: that head is gone (Snakemake's lock)
        assert recorder.interrupt_stale_runs(session, noticed_by="run new", host="here", workdir="/c",
                                             alive=lambda pid, started: True) == ["elsewhere"]
    engine.dispose()
