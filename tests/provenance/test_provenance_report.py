"""`euroflow prov report`: the HTML page of a run recorded by a real Snakemake run of a tiny workflow."""

from __future__ import annotations

import base64
import html
import re

import pytest
import yaml
from prov_workflow import git_cmd, snakemake
from sqlalchemy import select
from sqlalchemy.orm import Session

from euroflow.errors import EuroflowError
from euroflow.provenance.db import open_db
from euroflow.provenance.models import Job, SlurmJob
from euroflow.provenance.lookup import list_runs
from euroflow.provenance.queries import run_detail
from euroflow.provenance.report import write_report

# a valid 1x1 PNG
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

# make -> plot -> summarize -> all, make -> summarize, plot -> all (an edge across a layer), and a
# failing rule whose command (so its recorded error) holds a <script> tag
SNAKEFILE = r'''
from euroflow.provenance import announce_run_context

configfile: "config.yaml"

onstart:
    announce_run_context(config, db=config["db"], config_path="config.yaml")

rule all:
    input: "out/summary.txt", "out/plots/gone.png"

rule make:
    output: "out/data/{name}.txt"
    shell: "echo {wildcards.name:q} > {output:q}"

rule plot:
    input: "out/data/{name}.txt"
    output: "out/plots/{name}.png"
    shell: "echo %s | base64 -d > {output:q}"

rule summarize:
    input: "out/plots/loss.png", "out/data/hello.txt"
    output: "out/summary.txt"
    shell: "cat {input:q} > {output:q}"

rule broken:
    output: "out/broken.txt"
    shell: "echo '<script>alert(1)</script>' >&2; exit 3"
''' % PNG

RULES = ("all", "make", "plot", "summarize", "broken")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One failed run (broken fails, --keep-going runs the rest); a target path and wildcard hold
    `<SCRIPT>` (Snakemake's pathvars only claim lower-case `<name>`); gone.png is deleted afterwards;
    a Slurm accounting record is attached to the broken job."""
    work = tmp_path_factory.mktemp("report") / "wf"
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "config.yaml").write_text(yaml.safe_dump({"db": "prov/provenance.sqlite"}))
    (work / ".gitignore").write_text("out/\nprov/\n.snakemake/\n")
    git_cmd(work, "init", "-q")
    git_cmd(work, "add", "Snakefile", "config.yaml", ".gitignore")
    git_cmd(work, "commit", "-q", "-m", "report workflow")
    proc = snakemake(work, "all", "out/broken.txt", "out/data/<SCRIPT>evil.txt", "--keep-going")
    assert proc.returncode != 0 and "broken" in proc.stderr, proc.stderr[-3000:]
    (work / "out" / "plots" / "gone.png").unlink()
    engine = open_db(work / "prov" / "provenance.sqlite", create=False)
    (run,) = list_runs(engine)
    with Session(engine) as session:
        broken = session.scalars(select(Job).where(Job.rule == "broken")).one()
        session.add(SlurmJob(job_id=broken.id, slurm_jobid="424242", state="FAILED", max_rss_bytes=3 * 2**30))
        session.commit()
    yield {"work": work, "engine": engine, "run": run["id"], "commit": git_cmd(work, "rev-parse", "HEAD").strip()}
    engine.dispose()


@pytest.fixture(scope="module")
def page(recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "nested" / "report.html"
    assert write_report(recorded["engine"], recorded["run"][:8], out) == out
    return out.read_text(encoding="utf-8")


def test_header_names_the_run_its_code_and_environment(recorded, page):
    assert recorded["run"] in page and recorded["commit"] in page
    detail = run_detail(recorded["engine"], recorded["run"])
    assert '<span class="status failed">failed</span></h1>' in page and detail["snakemake_version"] in page
    assert detail["config_hash"] in page and detail["environments"][0]["python"] in page
    assert all(name in page for name in detail["packages"])


def test_rule_graph_is_layered_by_recorded_edges(page):
    nodes = dict(re.findall(r'data-rule="([^"]+)" data-layer="(\d+)"', page))
    assert set(nodes) == set(RULES)
    layers = {rule: int(layer) for rule, layer in nodes.items()}
    assert layers == {"make": 0, "broken": 0, "plot": 1, "summarize": 2, "all": 3}
    edges = set(re.findall(r"<title>(\w+) → (\w+)</title>", page))
    assert edges == {("make", "plot"), ("make", "summarize"), ("plot", "summarize"), ("plot", "all"), ("summarize", "all")}
    assert re.search(r'data-rule="broken"[^>]*data-status="failed"', page)


def test_every_job_attempt_has_a_row_with_its_slurm_ids_and_error(recorded, page):
    jobs = run_detail(recorded["engine"], recorded["run"])["jobs"]
    table = page.split("<h2>Jobs</h2>")[1].split("<h2>")[0]
    rows = re.findall(r'<tr><td class="mono">([^<]+)</td>', table)
    assert sorted(rows) == sorted(job["rule"] for job in jobs)
    broken_row = next(r for r in table.split("<tr>") if r.startswith('<td class="mono">broken<'))
    assert "424242" in broken_row and '<td class="num">3</td>' in broken_row
    assert "<summary>CalledProcessError in file" in broken_row and "RuleException:\nCalledProcessError" in broken_row
    stats = page.split("<h2>Per-rule statistics</h2>")[1].split("<h2>")[0]
    assert all(f">{rule}<" in stats for rule in RULES)
    assert "3.0 GiB" in stats  # max RSS from the Slurm record


def test_plots_are_embedded_and_a_deleted_one_is_listed_as_missing(recorded, page):
    png = (recorded["work"] / "out" / "plots" / "loss.png").read_bytes()
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(u) for u in uris] == [png]
    assert re.search(r"<code>out/plots/loss\.png</code>", page)
    assert re.search(r"<code>out/plots/gone\.png</code> <span[^>]*>\(missing", page)


def test_outputs_table_is_grouped_by_category_with_relative_paths(page):
    outputs = page.split("<h2>Outputs</h2>")[1]
    assert re.findall(r'<th colspan="4">(\w+) \(\d+\)</th>', outputs) == ["other", "plot"]
    assert "out/summary.txt" in outputs and "/wf/out/" not in outputs
    assert re.search(r"out/plots/loss\.png</td><td>plot</td><td class=\"num\">70 B</td><td class=\"mono\">[0-9a-f]{16}</td>", outputs)


def test_recorded_strings_are_escaped(page):
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the failed job's command, in its error
    assert "out/data/&lt;SCRIPT&gt;evil.txt" in page and "name=&lt;SCRIPT&gt;evil" in page
    assert html.unescape(page).count("<SCRIPT>evil") >= 3  # command line, wildcards, output path


def test_page_is_self_contained(page):
    assert not re.search(r"""(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?(https?:)?//", page, re.I)
    assert all(src.startswith("data:") for src in re.findall(r'\bsrc="([^"]*)"', page))


def test_unknown_run_raises_and_writes_nothing(recorded, tmp_path):
    out = tmp_path / "reports" / "report.html"
    with pytest.raises(EuroflowError, match="no such run"):
        write_report(recorded["engine"], "no-such-run", out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_rewriting_replaces_the_page_in_place(recorded, tmp_path):
    out = tmp_path / "report.html"
    out.write_text("stale")
    write_report(recorded["engine"], recorded["run"], out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind
