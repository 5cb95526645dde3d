"""Export one recorded run as a W3C PROV-JSON document or as a Provenance Run RO-Crate.

Both exports read the database through :func:`euroflow.provenance.queries.run_detail` and
write atomically (a temporary sibling renamed into place).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from prov.model import PROV_ROLE, PROV_TYPE, ProvDocument
from sqlalchemy import Engine

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError
from euroflow.provenance.queries import run_detail

EUROFLOW_NS = "https://w3id.org/euroflow/provenance#"

# Workflow Run RO-Crate 0.5 (the newest version roc-validator 0.13 checks) builds on RO-Crate 1.1
# and Workflow RO-Crate 1.0; the Provenance Run Crate level is the one that describes every step.
RO_CRATE_VERSION = "1.1"
WRROC_VERSION = "0.5"
WRROC_PROFILES = {
    f"https://w3id.org/ro/wfrun/process/{WRROC_VERSION}": "Process Run Crate",
    f"https://w3id.org/ro/wfrun/workflow/{WRROC_VERSION}": "Workflow Run Crate",
    f"https://w3id.org/ro/wfrun/provenance/{WRROC_VERSION}": "Provenance Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
# RO-Crate 1.1's context lacks sha256 (1.2 added it with this IRI)
EXTRA_TERMS = {"sha256": "http://schema.org/sha256"}
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"
NO_LICENSE = "unspecified: no licence was given when this run was exported"


def _detail(engine: Engine, run_id: str) -> dict[str, Any]:
    return run_detail(engine, run_id)


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _wildcards(wildcards: dict[str, Any] | None) -> str:
    return json.dumps(wildcards or {}, sort_keys=True, separators=(",", ":"))


def _label(job: dict[str, Any]) -> str:
    wc = ", ".join(f"{k}={v}" for k, v in sorted((job["wildcards"] or {}).items()))
    return f"{job['rule']}[{wc}]" if wc else job["rule"]


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def build_prov_document(detail: dict[str, Any]) -> ProvDocument:
    """The PROV document of a run as returned by ``run_detail``.

    Identifiers: the run is ``urn:uuid:<run id>``; a job attempt is
    ``urn:euroflow:run:<run id>:job:<snakemake jobid>.<attempt>``; an artifact is
    ``urn:euroflow:artifact:<database id>`` (stable within one provenance database; its
    path and sha256 are attributes). Edges carry the role (input, output, log, benchmark)
    as ``prov:role``.
    """
    doc = ProvDocument()
    ef = doc.add_namespace("euroflow", EUROFLOW_NS)
    run_ns = doc.add_namespace("run", "urn:uuid:")
    job_ns = doc.add_namespace("job", f"urn:euroflow:run:{detail['id']}:job:")
    art_ns = doc.add_namespace("artifact", "urn:euroflow:artifact:")
    user_ns = doc.add_namespace("user", "urn:euroflow:user:")

    run = doc.activity(
        run_ns[detail["id"]],
        _time(detail["started_at"]),
        _time(detail["ended_at"]),
        _present({
            PROV_TYPE: ef["Run"],
            ef["status"]: detail["status"],
            ef["git_commit"]: detail["git_commit"],
            ef["git_dirty"]: detail["git_dirty"],
            ef["config_hash"]: detail["config_hash"],
            ef["config_path"]: detail["config_path"],
            ef["snakemake_version"]: detail["snakemake_version"],
            ef["snakefile"]: detail["snakefile"],
            ef["workdir"]: detail["workdir"],
            ef["command"]: detail["command"],
            ef["host"]: detail["host"],
            ef["user"]: detail["user"],
        }),
    )
    agent = None
    if detail["user"]:
        account = f"{detail['user']}@{detail['host']}" if detail["host"] else detail["user"]
        agent = doc.agent(user_ns[account], _present({
            PROV_TYPE: ef["UserAccount"], ef["user"]: detail["user"], ef["host"]: detail["host"],
        }))
        doc.wasAssociatedWith(run, agent)

    for artifact in detail["artifacts"]:
        doc.entity(art_ns[str(artifact["artifact_id"])], _present({
            ef["path"]: artifact["path"],
            ef["sha256"]: artifact["sha256"],
            ef["size"]: artifact["size"],
            ef["kind"]: artifact["kind"],
        }))

    for job in detail["jobs"]:
        activity = doc.activity(
            job_ns[f"{job['snakemake_jobid']}.{job['attempt']}"],
            _time(job["started_at"]),
            _time(job["ended_at"]),
            _present({
                PROV_TYPE: ef["JobAttempt"],
                ef["rule"]: job["rule"],
                ef["wildcards"]: _wildcards(job["wildcards"]),
                ef["status"]: job["status"],
                ef["attempt"]: job["attempt"],
                ef["snakemake_jobid"]: job["snakemake_jobid"],
                ef["exit_status"]: job["exit_status"],
                ef["threads"]: job["threads"],
            }),
        )
        doc.wasInformedBy(activity, run)
        if agent is not None:
            doc.wasAssociatedWith(activity, agent)
        for edge in job["used"]:
            doc.used(activity, art_ns[str(edge["artifact_id"])], other_attributes={PROV_ROLE: edge["role"]})
        for edge in job["generated"]:
            doc.wasGeneratedBy(art_ns[str(edge["artifact_id"])], activity, other_attributes={PROV_ROLE: edge["role"]})
    return doc


def export_prov_json(engine: Engine, run_id: str, out: Path) -> Path:
    """Write the run ``run_id`` (or an unambiguous prefix) as a PROV-JSON file at ``out``.

    The run and every job attempt are ``prov:Activity`` records (job attempts ``wasInformedBy``
    the run), artifacts are ``prov:Entity`` records linked by ``used`` / ``wasGeneratedBy``,
    and the recorded user account is a ``prov:Agent`` the run and its jobs were associated with.
    Run and job details are attributes in the ``euroflow:`` namespace (:data:`EUROFLOW_NS`).
    """
    out = Path(out)
    doc = build_prov_document(_detail(engine, run_id))
    with atomic_path(out) as tmp:
        doc.serialize(str(tmp), format="json", indent=2)
    return out


def _crate_time(value: str | None) -> str | None:
    """ISO 8601 with millisecond precision, the form the Workflow Run Crate checks expect."""
    return None if value is None else dt.datetime.fromisoformat(value).isoformat(timespec="milliseconds")


def _status(status: str) -> str:
    return COMPLETED if status == "success" else FAILED


def _one_or_many(entities: list) -> Any:
    """RO-Crate 1.1 prefers a single value to a one-element list."""
    return entities[0] if len(entities) == 1 else entities


def _file_uri(path: str, kind: str) -> str:
    uri = Path(path).as_uri()
    return uri + "/" if kind == "directory" else uri


def export_ro_crate(engine: Engine, run_id: str, out: Path, *, license: str | None = None) -> Path:
    """Write the run ``run_id`` as a Provenance Run Crate (Workflow Run RO-Crate 0.5) directory ``out``.

    The crate conforms to RO-Crate 1.1, Workflow RO-Crate 1.0 and the Process, Workflow and
    Provenance Run Crate 0.5 profiles:

    * the Snakefile is the main ``ComputationalWorkflow``; it is copied into the crate as
      ``Snakefile`` (the file as it is at export time: the run's git commit and dirty flag are
      recorded on the run action). Each rule is a ``SoftwareApplication`` the workflow ``hasPart``
      and a ``HowToStep`` of the workflow.
    * the run is a ``CreateAction`` with the workflow as ``instrument``; its ``object`` are the
      artifacts the jobs read that no job of this run wrote, its ``result`` the artifacts written.
    * every job attempt is a ``CreateAction`` (name: rule and wildcards, start/end time,
      ``actionStatus`` completed/failed) with the rule as ``instrument``, its inputs as ``object``
      and everything it wrote (outputs, logs, benchmarks) as ``result``; a ``ControlAction`` per
      attempt links it to its step, and an ``OrganizeAction`` (Snakemake as ``instrument``) has the
      control actions as ``object`` and the run action as ``result``.

    Data files are NOT copied (checkpoints are many GB): each artifact is a ``File`` (or
    ``Dataset`` for a directory) whose ``@id`` is the absolute ``file://`` URI of its recorded
    path, with ``sha256`` and ``contentSize`` (bytes). RO-Crate allows absolute URIs as data
    entity identifiers, and such entities need not be in the crate payload. When a run saw two
    contents at one path, each is kept apart with ``#sha256=<digest>`` appended to the URI.

    RO-Crate requires a ``license`` on the crate: ``license`` (a URL such as an SPDX licence URL,
    or a text) is used when given; otherwise the crate says the licence is unspecified.
    """
    from rocrate.model.contextentity import ContextEntity
    from rocrate.model.softwareapplication import SoftwareApplication
    from rocrate.rocrate import ROCrate

    out = Path(out)
    detail = _detail(engine, run_id)
    crate = ROCrate(version=RO_CRATE_VERSION)
    crate.name = f"euroflow run {detail['id']}"
    crate.description = f"Snakemake run {detail['id']} ({detail['status']}) recorded by euroflow"
    crate.datePublished = _crate_time(detail["ended_at"] or detail["started_at"])
    if license and "://" in license:
        crate.license = crate.add(ContextEntity(crate, license, properties={"@type": "CreativeWork", "name": license}))
    else:
        crate.license = license or NO_LICENSE
    crate.metadata.extra_terms.update(EXTRA_TERMS)

    snakefile = Path(detail["snakefile"]) if detail["snakefile"] else None
    if snakefile is None or not snakefile.is_file():
        raise EuroflowError(f"run {detail['id']}: Snakefile {snakefile} is missing, cannot describe the workflow")
    workflow = crate.add_workflow(
        snakefile, dest_path="Snakefile", main=True, lang="snakemake",
        lang_version=detail["snakemake_version"],
        properties={"name": "Snakefile", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"]},
    )
    for profile_id, name in WRROC_PROFILES.items():
        if crate.get(profile_id) is None:
            crate.add(ContextEntity(crate, profile_id, properties={
                "@type": "CreativeWork", "name": name, "version": profile_id.rsplit("/", 1)[1],
            }))
        if profile_id not in {p.id for p in crate.root_dataset.get("conformsTo", []) if hasattr(p, "id")}:
            crate.root_dataset.append_to("conformsTo", crate.get(profile_id))

    snakemake_app = crate.add(SoftwareApplication(crate, "https://snakemake.github.io", properties={
        "name": "Snakemake", "version": detail["snakemake_version"], "url": "https://snakemake.github.io",
    }))

    paths_seen: dict[str, int] = {}
    for artifact in detail["artifacts"]:
        paths_seen[artifact["path"]] = paths_seen.get(artifact["path"], 0) + 1
    entities = {}
    for artifact in detail["artifacts"]:
        uri = _file_uri(artifact["path"], artifact["kind"])
        if paths_seen[artifact["path"]] > 1:
            uri += f"#sha256={artifact['sha256']}"
        props = _present({
            "name": Path(artifact["path"]).name,
            "alternateName": artifact["path"],
            "sha256": artifact["sha256"],
            "contentSize": None if artifact["size"] is None else str(artifact["size"]),
        })
        if artifact["kind"] == "directory":
            entity = crate.add_dataset(uri, properties=props)
        else:
            entity = crate.add_file(uri, properties=props)
        entities[artifact["artifact_id"]] = entity

    tools, steps = {}, {}
    for position, rule in enumerate(dict.fromkeys(j["rule"] for j in detail["jobs"])):
        tools[rule] = crate.add(SoftwareApplication(crate, f"#rule-{rule}", properties={"name": f"rule {rule}"}))
        steps[rule] = crate.add(ContextEntity(crate, f"#step-{rule}", properties={
            "@type": "HowToStep", "name": rule, "position": str(position), "workExample": {"@id": f"#rule-{rule}"},
        }))
        workflow.append_to("hasPart", tools[rule])
        workflow.append_to("step", steps[rule])

    written_ids = {e["artifact_id"] for j in detail["jobs"] for e in j["generated"]}
    run_inputs = sorted({e["artifact_id"] for j in detail["jobs"] for e in j["used"]} - written_ids)
    run_action = crate.add_action(workflow, f"#run-{detail['id']}", properties=_present({
        "@type": "CreateAction",
        "name": f"Snakemake run {detail['id']}",
        "startTime": _crate_time(detail["started_at"]),
        "endTime": _crate_time(detail["ended_at"]),
        "actionStatus": _status(detail["status"]),
        "description": detail["command"],
        "error": detail["error"],
    }))
    run_action["object"] = _one_or_many([entities[i] for i in run_inputs])
    run_action["result"] = _one_or_many([entities[i] for i in sorted(written_ids)])
    person = None
    if detail["user"]:
        person = crate.add(ContextEntity(crate, f"#user-{detail['user']}", properties={
            "@type": "Person", "name": detail["user"],
        }))
        run_action["agent"] = person

    control_actions, job_actions = [], []
    for job in detail["jobs"]:
        job_id = f"#job-{detail['id']}-{job['snakemake_jobid']}.{job['attempt']}"
        action = crate.add_action(tools[job["rule"]], job_id, properties=_present({
            "@type": "CreateAction",
            "name": f"{_label(job)} attempt {job['attempt']}",
            "startTime": _crate_time(job["started_at"]),
            "endTime": _crate_time(job["ended_at"]),
            "actionStatus": _status(job["status"]),
            "description": job["shellcmd"],
            "error": job["error"],
        }))
        action["object"] = _one_or_many([entities[e["artifact_id"]] for e in job["used"]])
        action["result"] = _one_or_many([entities[e["artifact_id"]] for e in job["generated"]])
        if person is not None:
            action["agent"] = person
        job_actions.append(action)
        control_actions.append(crate.add(ContextEntity(crate, f"{job_id}-control", properties={
            "@type": "ControlAction",
            "name": f"orchestrate {_label(job)} attempt {job['attempt']}",
            "instrument": {"@id": steps[job["rule"]].id},
            "object": {"@id": action.id},
        })))
    crate.root_dataset["mentions"] = [run_action, *job_actions]
    crate.add(ContextEntity(crate, f"#organize-{detail['id']}", properties={
        "@type": "OrganizeAction",
        "name": f"Snakemake orchestration of run {detail['id']}",
        "instrument": {"@id": snakemake_app.id},
        "object": _one_or_many([{"@id": c.id} for c in control_actions]),
        "result": {"@id": run_action.id},
        **_present({"startTime": _crate_time(detail["started_at"]), "endTime": _crate_time(detail["ended_at"])}),
    }))

    with atomic_path(out, directory=True) as tmp:
        crate.write(tmp)
    return out
