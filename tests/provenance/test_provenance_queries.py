"""lineage, verify and diff on a database filled by real Snakemake runs of the tiny workflow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from prov_workflow import DB_RELATIVE, make_workflow, snakemake

from euroflow.errors import EuroflowError
from euroflow.provenance import cli
from euroflow.provenance.db import open_db
from euroflow.provenance.lookup import lineage, list_runs
from euroflow.provenance.queries import diff_runs, list_jobs, verify


@pytest.fixture(scope="module")
def recorded_runs(tmp_path_factory):
    """Two real runs, recorded once for the module (about 25 s); the outputs as they left them."""
    work = make_workflow(tmp_path_factory.mktemp("queries") / "wf")
    assert snakemake(work, "out/bundle").returncode == 0
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["greeting"] = "servus"
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(work, "out/bundle", "--forceall").returncode == 0
    shutil.copytree(work / "out", work.parent / "out-as-recorded")  # copy2: contents and mtimes
    engine = open_db(work / DB_RELATIVE, create=False)
    yield work, engine, [r["id"] for r in list_runs(engine)]
    engine.dispose()


@pytest.fixture
def two_runs(recorded_runs):
    """The recorded runs with their outputs as recorded: a test may change or delete them."""
    work = recorded_runs[0]
    shutil.rmtree(work / "out")
    shutil.copytree(work.parent / "out-as-recorded", work / "out")
    return recorded_runs


def test_lineage_walks_back_to_the_first_outputs(two_runs):
    work, engine, (first, second) = two_runs
    tree = lineage(engine, work / "out" / "bundle")
    assert tree["kind"] == "directory" and tree["job"]["rule"] == "bundle" and tree["job"]["run"] == second
    assert sorted(child["job"]["wildcards"]["lang"] for child in tree["inputs"]) == ["de", "fr"]
    assert all(child["inputs"] == [] for child in tree["inputs"])
    with pytest.raises(EuroflowError, match="no such artifact"):
        lineage(engine, work / "out" / "nothing.txt")


def test_verify_reports_changed_and_missing_artifacts(two_runs):
    work, engine, (_, second) = two_runs
    assert verify(engine, second)["ok"]
    (work / "out" / "de" / "greeting.txt").write_text("changed\n")
    (work / "out" / "bundle" / "all.txt").unlink()
    problems = {p["path"].split("/wf/")[1]: p["status"] for p in verify(engine, second)["problems"]}
    assert problems == {"out/de/greeting.txt": "changed", "out/bundle": "changed"}
    (work / "out" / "fr" / "greeting.txt").unlink()
    problems = {p["path"].split("/wf/")[1]: p["status"] for p in verify(engine, second)["problems"]}
    assert problems["out/fr/greeting.txt"] == "missing"


def test_diff_names_the_config_key_and_the_changed_outputs(two_runs):
    work, engine, (first, second) = two_runs
    diff = diff_runs(engine, first, second)
    assert diff["config"] == [{"key": "greeting", "a": "hello", "b": "servus"}]
    changed = {d["key"] for d in diff["artifacts"]}
    assert {"out/de/greeting.txt", "out/fr/greeting.txt", "out/bundle"} <= changed
    assert diff["packages"] == [] and "git_commit" not in diff["code"]
    assert diff_runs(engine, first, first)["artifacts"] == []


def test_cli_verify_exit_code_and_diff_json(two_runs):
    work, engine, (first, second) = two_runs
    cli = [sys.executable, "-m", "euroflow.cli", "prov"]
    db = ["--db", str(work / DB_RELATIVE)]
    assert subprocess.run(cli + ["verify", second] + db, capture_output=True).returncode == 0
    (work / "out" / "de" / "greeting.txt").write_text("changed\n")
    proc = subprocess.run(cli + ["verify", second[:8]] + db, capture_output=True, text=True)
    assert proc.returncode == 1 and "greeting.txt" in proc.stdout
    proc = subprocess.run(cli + ["diff", first, second, "--json"] + db, capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout)["config"][0]["key"] == "greeting"


def test_cli_exports_prov_json_and_ro_crate(two_runs, tmp_path):
    from prov.model import ProvDocument
    from rocrate.rocrate import ROCrate

    work, engine, (first, second) = two_runs
    cli = [sys.executable, "-m", "euroflow.cli", "prov", "export", second, "--db", str(work / DB_RELATIVE)]
    proc = subprocess.run(cli + ["--format", "prov-json", "-o", str(tmp_path / "run.json")], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert ProvDocument.deserialize(str(tmp_path / "run.json"), format="json").get_records()
    crate_dir = tmp_path / "crate"
    proc = subprocess.run(cli + ["--format", "ro-crate", "-o", str(crate_dir), "--license", "CC-BY-4.0"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    actions = [e for e in ROCrate(crate_dir).get_entities() if e.type == "CreateAction"]
    assert len(actions) == 1 + len(list_jobs(engine, second))  # the run, then one per job attempt


def test_runs_filter_by_site_status_and_date(tmp_path, capsys):
    import datetime as dt

    from euroflow.provenance import recorder
    from euroflow.provenance.db import open_db, session_factory

    db = tmp_path / "filters.sqlite"
    engine = open_db(db)
    with session_factory(engine).begin() as session:
        for run_id, site, day, status in (
            ("run-lumi-1", "lumi", dt.datetime(2026, 10, 1, 23, 30), "success"),
            ("run-leo-1", "leonardo", dt.datetime(2026, 10, 2, 8, 0), "failed"),
            ("run-lumi-2", "lumi", dt.datetime(2026, 10, 3, 0, 15), "failed"),
        ):
            recorder.start_run(session, run_id, day, workdir="/w", site=site)
            recorder.end_run(session, run_id, day + dt.timedelta(hours=1), status)
    engine.dispose()

    def ids(*args: str) -> list[str]:
        assert cli.main(["runs", "--db", str(db), "--json", *args]) == 0
        return [r["id"] for r in json.loads(capsys.readouterr().out)]

    assert ids() == ["run-lumi-1", "run-leo-1", "run-lumi-2"]
    assert ids("--site", "lumi") == ["run-lumi-1", "run-lumi-2"]
    assert ids("--status", "failed") == ["run-leo-1", "run-lumi-2"]
    assert ids("--site", "lumi", "--status", "failed") == ["run-lumi-2"]
    assert ids("--since", "2026-10-02") == ["run-leo-1", "run-lumi-2"]
    assert ids("--until", "2026-10-02") == ["run-lumi-1", "run-leo-1"]  # a date includes its whole day
    assert ids("--since", "2026-10-01T23:45:00", "--until", "2026-10-02T12:00:00") == ["run-leo-1"]
    assert cli.main(["runs", "--db", str(db), "--since", "last tuesday"]) == 1
    assert "'last tuesday': not a date" in capsys.readouterr().err
