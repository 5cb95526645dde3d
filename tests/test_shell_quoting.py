"""No config value or file name reaches a shell unquoted.

Hypothesis builds hostile strings (command substitution, backticks, ``;``, ``&&``, ``|``, quotes of
both kinds, globs, ``$VARIABLES``, non-ASCII) for every string-valued config key that becomes a
path (results, data root, shard directory, manifest) and for shard file names. Snakemake plans
the real workflow with them (its API, in this process: a fraction of a second per example), and
every shell command the real rules render is run by bash, with ``euroflow`` a shell function that
records the arguments it receives. A canary file that each payload would create must never
appear, and the values must arrive as the arguments they are. Strings that cannot be paths
(control characters, braces, a leading ``-``) must be refused by the Snakefile with one line.
"""

from __future__ import annotations

import contextlib
import io
import os
import logging
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from euroflow import config as run_config
from euroflow.data.manifest import write_manifest
from euroflow.errors import EuroflowError
from euroflow.paths import RunPaths
from euroflow.sites.dry_run import JobInfoCollector

REPO_ROOT = Path(__file__).resolve().parents[1]
CANARY = "CANARY"
PAYLOADS = [
    "$(touch {canary})", "`touch {canary}`", "; touch {canary};", "&& touch {canary}", "| touch {canary}",
    "' ; touch {canary} ; '", "\" ; touch {canary} ; \"", "'$(touch {canary})'", "\"$(touch {canary})\"",
    "\\\"; touch {canary} #", "$HOME", "$IFS", "*", "?", "[ab]", "~", "!", "#", "%", "&", "<", ">", "(", ")",
    " ", "  ", "é", "ß", "€", "日本", "$'\\x41'",
]
PLAIN = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="{}/"), max_size=4)
# a piece of a path: payloads (their canary path filled in per example) and arbitrary printable text
PIECE = st.lists(st.one_of(st.sampled_from(PAYLOADS), PLAIN), min_size=1, max_size=4).map("".join)
PRELUDE = (
    "set -euo pipefail; "
    'euroflow() { local arg; for arg in "$@"; do printf "%s\\0" "$arg"; done > "$ARGV_FILE"; }; '
)


def _name(piece: str, base: Path) -> str:
    """``piece`` with its canary path filled in, usable as one path component (the canary's own
    slashes become directories: harmless, the payload is the point)."""
    text = piece.replace("{canary}", str(base / CANARY)).strip("/") or "x"
    return "x" + text if text.startswith("-") else text


def _config(base: Path, results: str, data_root: str, shards: str, shard_name: str, manifest: str | None) -> Path:
    """A one-language run of kind hplt whose paths and shard file name are the hostile strings."""
    cfg = yaml.safe_load((REPO_ROOT / "workflow" / "configs" / "tiny.yaml").read_text())
    cfg["languages"] = ["de"]
    cfg["evaluation"]["bpb_languages"] = ["de"]
    shard_dir = base / shards
    (shard_dir / "deu_Latn").mkdir(parents=True, exist_ok=True)
    for name in (f"{shard_name}.jsonl.zst", "plain.jsonl.zst"):
        (shard_dir / "deu_Latn" / name).touch()
    cfg["data"]["source"] = {"kind": "hplt", "shards": str(shard_dir)}
    if manifest is not None:
        manifest_path = base / manifest / "manifest.tsv"
        write_manifest(shard_dir, ["de"], manifest_path)
        cfg["data"]["source"]["manifest"] = str(manifest_path)
    cfg["paths"] = {"results": str(base / results), "data_root": str(base / data_root), "provenance_db": str(base / "p.sqlite")}
    for name in RunPaths(cfg).bundle_inputs:  # the evaluation sets the rules read, under the hostile data root
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).touch()
    path = base / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def _plan(config_path: Path, workdir: Path) -> list[dict]:
    """Every job the real workflow plans for ``config_path``, with its rendered shell command."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, ExecutionSettings, OutputSettings, ResourceSettings

    collector = JobInfoCollector()
    snakemake_logger = logging.getLogger("snakemake")
    snakemake_logger.addHandler(collector)
    try:
        with SnakemakeApi(OutputSettings(printshellcmds=True, quiet={Quietness.ALL})) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=ConfigSettings(configfiles=[config_path]),
                snakefile=REPO_ROOT / "Snakefile",
                workdir=workdir,
            )
            workflow.dag(dag_settings=DAGSettings(forceall=True)).execute_workflow(
                executor="dryrun", execution_settings=ExecutionSettings()
            )
    finally:
        snakemake_logger.removeHandler(collector)
    return collector.jobs


def _run(job: dict, base: Path, index: int) -> list[str]:
    """Run one job's shell command with bash; the arguments ``euroflow`` received."""
    for path in [*job["output"], *job["log"]]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    argv_file = base / f"argv-{index}"
    env = {"PATH": "/usr/bin:/bin", "ARGV_FILE": str(argv_file), "HOME": str(base)}
    proc = subprocess.run(["bash", "-c", PRELUDE + job["shellcmd"]], cwd=base, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (job["rule"], job["shellcmd"], proc.stderr)
    return argv_file.read_bytes().decode().split("\0")[:-1]


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# no shrinking: the failing example is printed as found, and a failure stays cheap in CI
@settings(max_examples=int(os.environ.get("EUROFLOW_QUOTING_EXAMPLES", "200")), deadline=None,
          suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(results=PIECE, data_root=PIECE, shards=PIECE, shard_name=PIECE, manifest=st.none() | PIECE)
def test_no_config_value_or_file_name_reaches_the_shell_unquoted(results, data_root, shards, shard_name, manifest):
    with tempfile.TemporaryDirectory(prefix="euroflow-quoting-") as tmp:
        base = Path(tmp).resolve()
        names = {key: _name(value, base) for key, value in
                 dict(results=results, data_root=data_root, shards=shards, shard_name=shard_name).items()}
        names["shard_name"] = names["shard_name"].replace("/", "_")
        config_path = _config(base, *names.values(), None if manifest is None else _name(manifest, base))
        jobs = _plan(config_path, base)
        results_root = str(base / names["results"])
        commands = [job for job in jobs if job["shellcmd"]]
        assert {job["rule"] for job in commands} >= {"prepare_shard", "tokenize_shard", "pretrain", "bits_per_byte", "gguf"}
        for i, job in enumerate(commands):
            argv = _run(job, base, i)
            assert any(results_root in arg for arg in argv), (job["rule"], argv)
            if "--data-root" in argv:
                assert _after(argv, "--data-root") == str(base / names["data_root"])
            if job["rule"] == "prepare_shard":  # a manifest's shard paths are relative to it: compare resolved
                assert Path(_after(argv, "--input")).resolve() in {
                    base / names["shards"] / "deu_Latn" / f"{names['shard_name']}.jsonl.zst",
                    base / names["shards"] / "deu_Latn" / "plain.jsonl.zst",
                }
        assert not (base / CANARY).exists(), "a config value or file name was executed by the shell"


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("results", "r\nrm -rf x", "contains the control character '\\n'"),
        ("results", "r{wildcard}", "contains '{', which Snakemake reads as part of a wildcard"),
        ("data_root", "-rf", "starts with '-', which command-line tools read as an option"),
    ],
)
def test_values_that_cannot_be_paths_are_refused_in_one_line(key, value, expected, tmp_path):
    cfg = yaml.safe_load((REPO_ROOT / "workflow" / "configs" / "tiny.yaml").read_text())
    cfg["paths"] = {"results": str(tmp_path / "results"), "provenance_db": str(tmp_path / "p.sqlite"), key: value}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as stop:
        _plan(path, tmp_path)
    assert stop.value.code == 1
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("euroflow: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"euroflow: error: {path}: paths.{key}: {value!r} {expected}"), errors
    with pytest.raises(EuroflowError, match="paths." + key):
        run_config.load(path)
    assert not (tmp_path / "results").exists()


def test_a_shard_file_name_that_cannot_be_a_path_is_named(tmp_path):
    shards = tmp_path / "hplt" / "deu_Latn"
    shards.mkdir(parents=True)
    (shards / "bad\nname.jsonl.zst").touch()
    cfg = yaml.safe_load((REPO_ROOT / "workflow" / "configs" / "tiny.yaml").read_text())
    cfg.update(languages=["de"])
    cfg["evaluation"]["bpb_languages"] = ["de"]
    cfg["data"]["source"] = {"kind": "hplt", "shards": str(tmp_path / "hplt")}
    cfg["paths"] = {"results": str(tmp_path / "results"), "provenance_db": str(tmp_path / "p.sqlite")}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit):
        _plan(path, tmp_path)
    line = [line for line in stderr.getvalue().splitlines() if line.startswith("euroflow: error:")]
    bad = str(shards / "bad\nname.jsonl.zst")
    assert line == [f"euroflow: error: shard {bad!r}: the path contains the control character '\\n'; rename the file or directory"]

