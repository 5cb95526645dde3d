"""PROV-JSON and Workflow Run RO-Crate exports of real recorded runs of the tiny workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prov.model import ProvDocument
from rocrate.rocrate import ROCrate

from euroflow.errors import EuroflowError
from euroflow.provenance.db import open_db
from euroflow.provenance.export import (
    COMPLETED,
    FAILED,
    WRROC_PROFILES,
    build_prov_document,
    export_prov_json,
    export_ro_crate,
)
from euroflow.provenance.lookup import list_runs
from euroflow.provenance.queries import run_detail
from prov_workflow import DB_RELATIVE, make_workflow, snakemake

EF = "https://w3id.org/euroflow/provenance#"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two runs: the whole workflow, then a failing one with a retried attempt."""
    workdir = make_workflow(tmp_path_factory.mktemp("export") / "wf")
    ok = snakemake(workdir)
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = snakemake(workdir, "out/flaky.txt", "out/broken.txt", "--retries", "1", "--keep-going")
    assert bad.returncode != 0
    engine = open_db(workdir / DB_RELATIVE, create=False)
    runs = [r["id"] for r in list_runs(engine)]
    assert len(runs) == 2
    details = [run_detail(engine, r) for r in runs]
    assert [d["status"] for d in details] == ["success", "failed"]
    yield {"workdir": workdir, "engine": engine, "details": details}
    engine.dispose()


def attrs(record) -> dict[str, object]:
    return {k.uri: v for k, v in record.attributes}


@pytest.mark.parametrize("which", [0, 1])
def test_prov_json_round_trips_with_every_job_artifact_and_edge(recorded, tmp_path, which):
    detail = recorded["details"][which]
    out = export_prov_json(recorded["engine"], detail["id"][:8], tmp_path / "run.prov.json")
    assert out == tmp_path / "run.prov.json"
    assert json.loads(out.read_text())["prefix"]["euroflow"] == EF
    back = ProvDocument.deserialize(str(out), format="json")
    assert back == build_prov_document(detail)

    records = {}
    for record in back.get_records():
        records.setdefault(record.get_type().localpart, []).append(record)
    jobs, artifacts = detail["jobs"], detail["artifacts"]
    assert len(records["Activity"]) == len(jobs) + 1
    assert len(records["Entity"]) == len(artifacts) > 0
    assert len(records.get("Usage", [])) == sum(len(j["used"]) for j in jobs)
    assert len(records.get("Generation", [])) == sum(len(j["generated"]) for j in jobs)
    assert len(records.get("Communication", [])) == len(jobs)  # wasInformedBy the run
    assert len(records.get("Association", [])) == len(jobs) + 1
    [agent] = records["Agent"]
    assert attrs(agent)[EF + "user"] == detail["user"]

    run = back.get_record(f"run:{detail['id']}")[0]
    assert attrs(run)[EF + "git_commit"] == detail["git_commit"]
    assert attrs(run)[EF + "git_dirty"] is detail["git_dirty"]
    assert attrs(run)[EF + "config_hash"] == detail["config_hash"]
    assert attrs(run)[EF + "snakemake_version"] == detail["snakemake_version"]
    assert run.get_startTime().isoformat() == detail["started_at"]

    by_path = {attrs(e)[EF + "path"]: attrs(e) for e in records["Entity"]}
    for artifact in artifacts:
        entity = by_path[artifact["path"]]
        assert (entity[EF + "sha256"], entity[EF + "kind"]) == (artifact["sha256"], artifact["kind"])
    for job in jobs:
        activity = back.get_record(f"job:{job['snakemake_jobid']}.{job['attempt']}")[0]
        a = attrs(activity)
        assert (a[EF + "rule"], a[EF + "status"], a[EF + "attempt"]) == (job["rule"], job["status"], job["attempt"])
        assert json.loads(a[EF + "wildcards"]) == job["wildcards"]
    roles = sorted(attrs(r)["http://www.w3.org/ns/prov#role"] for r in records["Generation"])
    assert roles == sorted(e["role"] for j in jobs for e in j["generated"])


def test_prov_json_retried_attempts_are_separate_activities(recorded, tmp_path):
    detail = recorded["details"][1]
    flaky = [j for j in detail["jobs"] if j["rule"] == "flaky"]
    assert [(j["attempt"], j["status"]) for j in flaky] == [(1, "failed"), (2, "success")]
    doc = ProvDocument.deserialize(str(export_prov_json(recorded["engine"], detail["id"], tmp_path / "p.json")), format="json")
    jobid = flaky[0]["snakemake_jobid"]
    statuses = [attrs(doc.get_record(f"job:{jobid}.{n}")[0])[EF + "status"] for n in (1, 2)]
    assert statuses == ["failed", "success"]


def crate_entities(crate: ROCrate, type_name: str) -> list:
    return [e for e in crate.get_entities() if type_name in e.type]


def ids(value) -> set[str]:
    if value is None:
        return set()
    # references to entities outside the crate come back as plain ids or {"@id": ...}
    def one(v):
        return v if isinstance(v, str) else v["@id"] if isinstance(v, dict) else v.id

    return {one(v) for v in (value if isinstance(value, list) else [value])}


@pytest.mark.parametrize("which", [0, 1])
def test_ro_crate_reads_back_with_every_action_and_file(recorded, tmp_path, which):
    detail = recorded["details"][which]
    out = export_ro_crate(recorded["engine"], detail["id"], tmp_path / "crate", license="https://spdx.org/licenses/CC-BY-4.0")
    # only the metadata, a README and the (small) Snakefile: data files are referenced, never copied
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "Snakefile", "ro-crate-metadata.json"]
    assert detail["id"] in (out / "README.md").read_text()
    assert (out / "Snakefile").read_text() == (recorded["workdir"] / "Snakefile").read_text()

    crate = ROCrate(out)
    assert crate.mainEntity.id == "Snakefile"
    assert "ComputationalWorkflow" in crate.mainEntity.type
    assert crate.root_dataset["license"].id == "https://spdx.org/licenses/CC-BY-4.0"
    assert set(WRROC_PROFILES) - {"https://w3id.org/workflowhub/workflow-ro-crate/1.0"} <= ids(crate.root_dataset["conformsTo"])
    assert ids(crate.metadata["conformsTo"]) >= {"https://w3id.org/ro/crate/1.1", "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}

    readme = crate.get("README.md")
    assert readme["about"].id == "./" and readme["encodingFormat"] == "text/markdown"
    artifacts = detail["artifacts"]
    # the `all` target ran nothing and wrote nothing: no action of its own
    jobs = [j for j in detail["jobs"] if j["rule"] != "all" or j["status"] != "success"]
    actions = {a.id: a for a in crate_entities(crate, "CreateAction")}
    assert len(actions) == len(jobs) + 1
    assert len(crate_entities(crate, "ControlAction")) == len(jobs)
    [organize] = crate_entities(crate, "OrganizeAction")
    assert ids(organize["result"]) == {f"#run-{detail['id']}"}
    assert organize["instrument"]["name"] == "Snakemake"

    data = {e.id: e for e in crate.data_entities if e.id.startswith("file://")}
    assert len(data) == len(artifacts)
    by_path = {e["alternateName"]: e for e in data.values()}
    for artifact in artifacts:
        entity = by_path[artifact["path"]]
        assert entity["sha256"] == artifact["sha256"]
        assert entity["contentSize"] == str(artifact["size"])
        assert ("Dataset" if artifact["kind"] == "directory" else "File") in entity.type
        assert entity.id.startswith(Path(artifact["path"]).as_uri())  # outside any recorded results tree
        if artifact["kind"] == "file":
            assert entity["encodingFormat"] == "text/plain"  # the workflow's .txt files and .log logs

    def uris(edges):
        return {e.id for a in edges for e in data.values() if e["alternateName"] == a["path"] and e["sha256"] == a["sha256"]}

    for job in jobs:
        action = actions[f"#job-{detail['id']}-{job['snakemake_jobid']}.{job['attempt']}"]
        assert action["actionStatus"] == (COMPLETED if job["status"] == "success" else FAILED)
        assert action["instrument"].id == f"#rule-{job['rule']}"
        assert action["name"].startswith(job["rule"])
        for value in job["wildcards"].values():
            assert value in action["name"]
        assert action["startTime"][:19] == job["started_at"][:19]
        assert ids(action.get("object")) == uris(job["used"])
        assert ids(action.get("result")) == uris(job["generated"])
    run_action = actions[f"#run-{detail['id']}"]
    assert run_action["instrument"].id == "Snakefile"
    assert run_action["actionStatus"] == (COMPLETED if detail["status"] == "success" else FAILED)
    written = [e for j in jobs for e in j["generated"]]
    assert ids(run_action.get("result")) == uris(written)
    assert len(ids(crate.root_dataset["mentions"])) == len(jobs) + 1


def test_unknown_run_writes_nothing(recorded, tmp_path):
    with pytest.raises(EuroflowError, match="no-such-run"):
        export_prov_json(recorded["engine"], "no-such-run", tmp_path / "x.json")
    with pytest.raises(EuroflowError, match="no-such-run"):
        export_ro_crate(recorded["engine"], "no-such-run", tmp_path / "crate")
    assert list(tmp_path.iterdir()) == []


def test_export_replaces_an_existing_output(recorded, tmp_path):
    detail = recorded["details"][0]
    out = tmp_path / "crate"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    export_ro_crate(recorded["engine"], detail["id"], out)
    assert not (out / "stale.txt").exists()
    assert ROCrate(out).root_dataset["license"]  # RO-Crate requires one even when none was given
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crate"]


def test_media_types_of_the_pipeline_files():
    from euroflow.provenance.export import media_type

    assert [media_type(p) for p in ("a/ntrex.jsonl.zst", "r.json", "w.md", "x.gguf", "c.png", "t.log", "b.parquet", "s.sig.npz")] == [
        "application/zstd", "application/json", "text/markdown", "application/octet-stream", "image/png", "text/plain",
        "application/vnd.apache.parquet", "application/zip",
    ]
