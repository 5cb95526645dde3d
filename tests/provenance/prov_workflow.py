"""A tiny real Snakemake workflow (three rules writing small files) run with the euroflow logger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

SNAKEFILE = r'''
from euroflow.provenance import announce_run_context
from euroflow.provenance.sidecar import record_job_sidecars

configfile: "config.yaml"

onstart:
    announce_run_context(config, db=config["db"], config_path="config.yaml")

LANGS = ["de", "fr"]

rule all:
    input: expand("out/{lang}/greeting.txt", lang=LANGS), "out/bundle"

rule greet:
    output: "out/{lang}/greeting.txt"
    log: "logs/greet_{lang}.log"
    shell: "printf '%s {wildcards.lang}\n' {config[greeting]} > {output}; echo ok > {log}"

rule bundle:
    input: expand("out/{lang}/greeting.txt", lang=LANGS)
    output: directory("out/bundle")
    shell: "mkdir -p {output}/nested && cat {input} > {output}/all.txt && cp {input[0]} {output}/nested/first.txt"

rule broken:
    output: "out/broken.txt"
    log: "logs/broken.log"
    shell: "echo 'about to fail' > {log}; echo partial > {output}; exit 3"

rule flaky:  # fails on its first attempt only
    output: "out/flaky.txt"
    shell: "if [ -e flaky.marker ]; then echo ok > {output}; else touch flaky.marker; exit 7; fi"

rule forgetful:  # exits 0 but never writes its output
    output: "out/forgotten.txt"
    shell: "true"

record_job_sidecars(workflow)
'''

CONFIG = {"db": "prov/provenance.sqlite", "greeting": "hello"}
DB_RELATIVE = CONFIG["db"]


def make_workflow(workdir: Path, git: bool = True) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    if git:
        (workdir / ".gitignore").write_text("out/\nlogs/\nprov/\n.snakemake/\nflaky.marker\n")
        git_cmd(workdir, "init", "-q")
        git_cmd(workdir, "add", "Snakefile", "config.yaml", ".gitignore")
        git_cmd(workdir, "commit", "-q", "-m", "tiny workflow")
    return workdir


def git_cmd(workdir: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-C", str(workdir), *args],
        capture_output=True, text=True, check=True,
    )
    return proc.stdout


def snakemake(workdir: Path, *args: str, logger: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), *args, "--cores", "1"]
    if logger:
        cmd += ["--logger", "euroflow"]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=120)
