"""Export one recorded run as a W3C PROV-JSON document or as a Provenance Run RO-Crate.

Both exports read the database through :func:`euroflow.provenance.queries.run_detail` and
write atomically (a temporary sibling renamed into place).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prov.model import PROV_ROLE, PROV_TYPE, ProvDocument
from sqlalchemy import Engine

from euroflow.atomic import atomic_path
from euroflow.bundle import dataset_of
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
BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"


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


def data_entity_id(artifact: dict[str, Any], run_id: str) -> str:
    """A portable identifier for an artifact: inside the run's results tree, an ``arcp`` URI naming
    the run and the path in its tree (``arcp://uuid,<run>/tiny/quantized/tiny-Q8_0.gguf``), valid
    wherever the tree is; a file of the shared data bundle, an ``arcp`` URI of its sha256; anything
    else outside the tree (crawl shards), its ``file://`` URI."""
    import uuid

    import arcp

    stored = artifact.get("stored_path") or artifact["path"]
    if Path(stored).is_absolute() and artifact["kind"] == "file" and artifact.get("sha256") and dataset_of(stored):
        # a file of the shared data bundle: named by its content (RFC 6920 ni), the same on every machine
        digest = base64.urlsafe_b64encode(bytes.fromhex(artifact["sha256"])).decode("ascii").rstrip("=")
        return f"arcp://ni,sha-256;{digest}/"
    if Path(stored).is_absolute():
        return _file_uri(stored, artifact["kind"])
    path = quote(Path(stored).as_posix()) + ("/" if artifact["kind"] == "directory" else "")
    try:
        return arcp.arcp_uuid(str(uuid.UUID(run_id)), path)
    except ValueError:  # a run id that is no UUID (runs recorded from sidecars of a foreign tool)
        return arcp.arcp_name(quote(run_id, safe=""), path)


# what a file's name says it holds, where mimetypes does not know (RO-Crate: encodingFormat)
MEDIA_TYPES = {
    ".jsonl.zst": "application/zstd", ".zst": "application/zstd", ".jsonl": "application/jsonl",
    ".json": "application/json", ".npz": "application/zip", ".npy": "application/x-npy",
    ".parquet": "application/vnd.apache.parquet", ".gguf": "application/octet-stream",
    ".safetensors": "application/octet-stream", ".bin": "application/octet-stream", ".idx": "application/octet-stream",
    ".pt": "application/octet-stream", ".model": "application/octet-stream", ".distcp": "application/octet-stream",
    ".md": "text/markdown", ".log": "text/plain", ".txt": "text/plain", ".tsv": "text/tab-separated-values",
    ".yaml": "application/yaml", ".smk": "text/x-snakemake", ".sqlite": "application/vnd.sqlite3", ".gz": "application/gzip",
}


def media_type(path: str) -> str:
    import mimetypes

    name = Path(path).name.lower()
    for suffix, media in sorted(MEDIA_TYPES.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return media
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def _run_metadata(detail: dict[str, Any]) -> dict[str, Any]:
    """The ``run`` section of the recorded run config (licence, authors, publisher)."""
    try:
        return (json.loads(detail.get("config_json") or "{}") or {}).get("run") or {}
    except ValueError:
        return {}


def _license_entity(crate: Any, value: str, name: str | None = None) -> Any:
    """An SPDX identifier (``Apache-2.0``) or a licence URL, as the contextual entity RO-Crate recommends."""
    from rocrate.model.contextentity import ContextEntity

    url = value if "://" in value else f"https://spdx.org/licenses/{value}"
    props = {"@type": "CreativeWork", "name": name or value} | ({} if "://" in value else {"identifier": value})
    return crate.add(ContextEntity(crate, url, properties=props))


def _organization(crate: Any, value: str | dict | None) -> Any:
    """An organization of the run config (a name, or ``{name, url}``) as a contextual entity; one per name."""
    from rocrate.model.contextentity import ContextEntity

    if not value:
        return None
    value = {"name": value} if isinstance(value, str) else value
    ident = value.get("url") or f"#organization-{quote(value['name'], safe='')}"
    return crate.get(ident) or crate.add(ContextEntity(crate, ident, properties=_present({
        "@type": "Organization", "name": value["name"], "url": value.get("url"),
    })))


def _readme(detail: dict[str, Any], root: str | None) -> str:
    arcp_root = f"arcp://uuid,{detail['id']}/"
    lines = [
        f"# euroflow run {detail['id']}",
        "",
        f"Snakemake run {detail['id']} ({detail['status']}), {detail['started_at']} to {detail['ended_at']}, "
        f"recorded by euroflow and exported as a Provenance Run Crate (Workflow Run RO-Crate {WRROC_VERSION}).",
        "",
        f"- results tree: `{root or '(not recorded)'}`; files in it are named `{arcp_root}<path in the tree>`, "
        "valid wherever the tree is moved (`euroflow prov verify RUN --root DIR` checks a copy)",
        f"- code: git commit `{detail.get('git_commit') or 'unknown'}`{' (with uncommitted changes)' if detail.get('git_dirty') else ''}; "
        f"config sha256 `{detail.get('config_hash') or 'unknown'}`",
        "- data files are not copied into the crate: each has its sha256 and size; `ro-crate-metadata.json` lists every job "
        "attempt with what it read and wrote",
        "",
    ]
    return "\n".join(lines)


def export_ro_crate(engine: Engine, run_id: str, out: Path, *, license: str | None = None) -> Path:
    """Write the run ``run_id`` as a Provenance Run Crate (Workflow Run RO-Crate 0.5) directory ``out``.

    The crate conforms to RO-Crate 1.1, Workflow RO-Crate 1.0 and the Process, Workflow and
    Provenance Run Crate 0.5 profiles (roc-validator: REQUIRED and RECOMMENDED levels):

    * the Snakefile is the main ``ComputationalWorkflow`` (Bioschemas profile 1.0, version: the
      run's git commit), copied into the crate; a ``README.md`` about the crate says how to read it;
    * licence, authors and publisher come from the run config's ``run`` section (``license``: an
      SPDX id or URL; ``--license`` overrides; a warning names what is unset);
    * each rule is ``SoftwareSourceCode`` (the workflow ``hasPart`` it; a ``HowToStep`` per rule);
    * the run is a ``CreateAction`` with the workflow as ``instrument``; its ``object`` are the
      artifacts the jobs read that no job of this run wrote, its ``result`` the artifacts written;
    * every job attempt that ran a command is a ``CreateAction`` (name: rule and wildcards,
      start/end time, ``actionStatus``) with its rule as ``instrument``, its inputs as ``object`` and
      everything it wrote as ``result``; a ``ControlAction`` per attempt links it to its step, and an
      ``OrganizeAction`` (Snakemake as ``instrument``) has the control actions as ``object``.

    Data files are NOT copied (checkpoints are many GB): each artifact is a ``File`` (or
    ``Dataset`` for a directory) with ``sha256``, ``contentSize`` (bytes) and ``encodingFormat``,
    identified by :func:`data_entity_id` (portable ``arcp`` URIs inside the run's results tree).
    When a run saw two contents at one path, each is kept apart with ``#sha256=<digest>``.
    """
    import sys
    import tempfile

    from rocrate.model.contextentity import ContextEntity
    from rocrate.model.softwareapplication import SoftwareApplication
    from rocrate.rocrate import ROCrate

    out = Path(out)
    detail = _detail(engine, run_id)
    meta = _run_metadata(detail)
    crate = ROCrate(version=RO_CRATE_VERSION)
    crate.name = f"euroflow run {detail['id']}"
    crate.description = f"Snakemake run {detail['id']} ({detail['status']}) recorded by euroflow"
    crate.datePublished = _crate_time(detail["ended_at"] or detail["started_at"])
    licence = license or meta.get("license")
    unset = []
    if licence:
        crate.license = _license_entity(crate, licence)
    else:
        crate.license = NO_LICENSE
        unset.append("run.license")
    authors = []
    for i, author in enumerate(meta.get("authors") or []):
        author = {"name": author} if isinstance(author, str) else author
        affiliation = _organization(crate, author.get("affiliation"))
        authors.append(crate.add(ContextEntity(crate, author.get("orcid") or f"#author-{i + 1}", properties=_present({
            "@type": "Person", "name": author["name"], "affiliation": affiliation,
        }))))
    if authors:
        crate.root_dataset["author"] = _one_or_many(authors)
    else:
        unset.append("run.authors")
    publisher = _organization(crate, meta.get("publisher"))
    if publisher is not None:
        crate.root_dataset["publisher"] = publisher
    else:
        unset.append("run.publisher")
    if unset:
        print(f"euroflow: warning: run {detail['id']}: {', '.join(unset)} not set in the run config; the crate says so "
              "(set them for a crate others can cite and reuse)", file=sys.stderr)
    crate.metadata.extra_terms.update(EXTRA_TERMS)

    snakefile = Path(detail["snakefile"]) if detail["snakefile"] else None
    if snakefile is None or not snakefile.is_file():
        raise EuroflowError(f"run {detail['id']}: Snakefile {snakefile} is missing, cannot describe the workflow")
    code_version = detail.get("git_commit") or detail["snakemake_version"] or "unknown"
    # where the code of this commit can be read (the origin remote), so that rules have absolute ids
    code_url = f"{detail['git_remote']}/blob/{detail['git_commit']}" if detail.get("git_remote") and detail.get("git_commit") else None
    workflow_props = {"name": "Snakefile", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
                      "version": code_version, "encodingFormat": "text/x-snakemake", "conformsTo": {"@id": BIOSCHEMAS_WORKFLOW}}
    if code_url:  # where the remote serves this commit's workflow
        workflow_props["url"] = f"{code_url}/{snakefile.name}"
    # a file of the crate (Workflow RO-Crate requires it), so its id is relative: the one
    # Process Run Crate recommendation (absolute ids for all code) that cannot hold beside it
    workflow = crate.add_workflow(snakefile, dest_path="Snakefile", main=True, lang="snakemake",
                                  lang_version=detail["snakemake_version"], properties=workflow_props)
    if crate.get(BIOSCHEMAS_WORKFLOW) is None:
        crate.add(ContextEntity(crate, BIOSCHEMAS_WORKFLOW, properties={"@type": "CreativeWork", "name": "Bioschemas ComputationalWorkflow profile", "version": "1.0-RELEASE"}))
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
        uri = data_entity_id(artifact, detail["id"])
        if paths_seen[artifact["path"]] > 1:
            uri += f"#sha256={artifact['sha256']}"
        upstream = dataset_of(artifact["path"])
        props = _present({
            "name": Path(artifact["path"]).name,
            "description": f"{upstream.name}, from the shared data bundle" + (" (evaluation only)" if upstream.evaluation_only else "")
            if upstream else None,
            "alternateName": artifact.get("stored_path") or artifact["path"],
            "sha256": artifact["sha256"],
            "contentSize": None if artifact["size"] is None else str(artifact["size"]),
        })
        if artifact["kind"] == "directory":
            entity = crate.add_dataset(uri, properties=props)
        else:
            entity = crate.add_file(uri, properties=props | {"encodingFormat": media_type(artifact["path"])})
        if upstream:
            entity["license"] = _license_entity(crate, upstream.licence_url, upstream.licence)
        entities[artifact["artifact_id"]] = entity

    # a job that ran nothing and wrote nothing (the `all` target) is no action of its own
    jobs = [j for j in detail["jobs"] if j["shellcmd"] or j["generated"] or j["status"] != "success"]
    tools, steps = {}, {}
    for position, rule in enumerate(dict.fromkeys(j["rule"] for j in jobs)):
        rule_id = f"{code_url}/{snakefile.name}#rule-{quote(rule)}" if code_url else f"#rule-{rule}"
        tools[rule] = crate.add(ContextEntity(crate, rule_id, properties=_present({
            "@type": "SoftwareSourceCode", "name": f"rule {rule}", "version": code_version,
            "programmingLanguage": {"@id": workflow["programmingLanguage"].id}, "url": code_url,
        })))
        steps[rule] = crate.add(ContextEntity(crate, f"#step-{rule}", properties={
            "@type": "HowToStep", "name": rule, "position": str(position), "workExample": {"@id": rule_id},
        }))
        workflow.append_to("hasPart", tools[rule])
        workflow.append_to("step", steps[rule])

    written_ids = {e["artifact_id"] for j in jobs for e in j["generated"]}
    run_inputs = sorted({e["artifact_id"] for j in jobs for e in j["used"]} - written_ids)
    run_action = crate.add_action(workflow, f"#run-{detail['id']}", properties=_present({
        "@type": "CreateAction",
        "name": f"Snakemake run {detail['id']}",
        "startTime": _crate_time(detail["started_at"]),
        "endTime": _crate_time(detail["ended_at"]),
        "actionStatus": _status(detail["status"]),
        "description": detail["command"] or f"Snakemake run {detail['id']}",
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
    for job in jobs:
        job_id = f"#job-{detail['id']}-{job['snakemake_jobid']}.{job['attempt']}"
        action = crate.add_action(tools[job["rule"]], job_id, properties=_present({
            "@type": "CreateAction",
            "name": f"{_label(job)} attempt {job['attempt']}",
            "startTime": _crate_time(job["started_at"]),
            "endTime": _crate_time(job["ended_at"]),
            "actionStatus": _status(job["status"]),
            "description": job["shellcmd"] or f"Snakemake job {_label(job)} ({job['status']})",
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

    with tempfile.TemporaryDirectory() as scratch:
        readme = Path(scratch) / "README.md"
        readme.write_text(_readme(detail, detail.get("root")), encoding="utf-8")
        crate.add_file(readme, dest_path="README.md", properties={
            "name": "README.md", "about": {"@id": "./"}, "encodingFormat": "text/markdown",
        })
        with atomic_path(out, directory=True) as tmp:
            crate.write(tmp)
    return out
