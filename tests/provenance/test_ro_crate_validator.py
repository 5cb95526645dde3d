"""The Provenance Run Crate of a real run, checked by the RO-Crate community's validator
(roc-validator, crs4) at its REQUIRED and RECOMMENDED levels, offline.

roc-validator pins rich<14, so `make test` installs it into a venv of its own
(.venv-roc-validator, envs/roc-validator.txt) and names it in EUROFLOW_ROC_VALIDATOR.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from euroflow.provenance.db import open_db
from euroflow.provenance.export import export_ro_crate
from euroflow.provenance.lookup import list_runs
from prov_workflow import git_cmd, make_workflow, snakemake

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(os.environ.get("EUROFLOW_ROC_VALIDATOR", REPO_ROOT / ".venv-roc-validator" / "bin" / "rocrate-validator"))
RUN_METADATA = {
    "license": "CC-BY-4.0",
    "authors": [{"name": "Ada Lovelace", "orcid": "https://orcid.org/0000-0002-1825-0097",
                 "affiliation": {"name": "Analytical Engines", "url": "https://engines.example.org"}}],
    "publisher": {"name": "Example Consortium", "url": "https://consortium.example.org"},
}


@pytest.fixture(scope="module")
def validator(tmp_path_factory) -> tuple[Path, Path]:
    if not VALIDATOR.is_file():
        if os.environ.get("EUROFLOW_ROC_VALIDATOR"):
            pytest.fail(f"EUROFLOW_ROC_VALIDATOR={VALIDATOR}: not installed (make install-roc-validator)")
        pytest.skip("roc-validator is not installed (make install-roc-validator; make test does it)")
    cache = tmp_path_factory.mktemp("roc-cache") / "http"
    seed = subprocess.run([str(VALIDATOR.with_name("python")), str(Path(__file__).with_name("seed_validator_cache.py")), str(cache)],
                          capture_output=True, text=True)
    assert seed.returncode == 0, seed.stderr
    return VALIDATOR, cache


@pytest.fixture(scope="module")
def crate(tmp_path_factory) -> Path:
    """A real Snakemake run of a workflow whose config names licence, author and publisher, and whose
    code has a web remote (so that its rules have absolute ids)."""
    workdir = make_workflow(tmp_path_factory.mktemp("validated") / "wf")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump({**config, "run": RUN_METADATA}))
    git_cmd(workdir, "remote", "add", "origin", "git@github.com:example-org/tiny-workflow.git")
    git_cmd(workdir, "commit", "-q", "-am", "run metadata")
    assert snakemake(workdir).returncode == 0
    engine = open_db(workdir / "prov" / "provenance.sqlite", create=False)
    try:
        (run,) = list_runs(engine)
        return export_ro_crate(engine, run["id"], workdir.parent / "crate")
    finally:
        engine.dispose()


def _validate(validator: tuple[Path, Path], crate: Path, level: str, report: Path) -> dict:
    exe, cache = validator
    proc = subprocess.run(
        [str(exe), "validate", "--offline", "--cache-path", str(cache), "-p", "provenance-run-crate", "-l", level,
         "--no-paging", "-f", "json", "-o", str(report), str(crate)],
        capture_output=True, text=True, timeout=600,
    )
    assert report.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(report.read_text())


def test_the_crate_passes_every_required_check(validator, crate, tmp_path):
    result = _validate(validator, crate, "required", tmp_path / "required.json")
    assert result["passed"], [i["message"] for i in result["issues"]]
    assert result["statistics"]["total_skipped_checks"] == 0  # the context was there: nothing skipped offline


def test_the_crate_passes_the_recommended_checks_but_one_that_cannot_hold(validator, crate, tmp_path):
    """Process Run Crate 0.5 recommends an absolute (http) id for every piece of code; Workflow RO-Crate
    1.0 requires the main workflow to be a file of the crate, whose id is its path in the crate. Every
    other recommendation holds: encodingFormat on every file, a README about the crate, licence, author
    and publisher as contextual entities, versioned rules with absolute ids and a url."""
    result = _validate(validator, crate, "recommended", tmp_path / "recommended.json")
    failed = {(i["check"]["identifier"], i["violatingPropertyValue"]) for i in result["issues"]}
    assert failed == {("process-run-crate-0.5_5.1", (crate / "Snakefile").resolve().as_uri())}, result["issues"]
    assert result["statistics"]["total_passed_checks"] == result["statistics"]["total_checks"] - 1
