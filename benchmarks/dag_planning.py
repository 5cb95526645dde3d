"""How long ``snakemake -n`` takes to plan a production-sized euroflow run, against a bare Snakefile
with the same number of jobs, in the same run.

    python benchmarks/dag_planning.py [--languages-count 35] [--shards 300] [--repeat 3] [--workdir DIR] [--keep]

Under a work directory (a temporary one unless ``--workdir``; removed unless ``--keep``) it lays out
``--languages-count`` languages x ``--shards`` EMPTY crawl shards the way HPLT does
(``<dir>/<hplt code>/<n>.jsonl.zst``; a dry run only needs them to exist), writes a shard manifest
(``euroflow.data.manifest.write_manifest``) and two run configs: ``workflow/configs/eu-1b.yaml`` with
``data.source`` pointed at the shards (with the manifest, and without it: each language's directory is
listed) and ``paths.results``/``paths.provenance_db`` in the work directory. It also writes a bare
Snakefile of trivial ``cp``/``touch`` rules shaped like the euroflow DAG (per-shard prepare and tokenize
rules, a per-language aggregation, the run-level rules down to ``all``), with exactly as many jobs, every
one of them needing to run.

Each case is timed (wall clock of the whole ``snakemake -n`` process) ``--repeat`` times, alternating the
order, and the median is reported with its ratio to the bare Snakefile (goal: <= 1.3). A 1-job Snakefile
("startup") is timed too: it is what every Snakemake start costs on this machine whatever the DAG
(imports, executor plugins) and is reported so the ratio can be read without it as well.
``--cprofile FILE`` also profiles one euroflow dry run (``python -m cProfile -o FILE``) and prints the
functions of this repository (Snakefile, rules, ``src/``) that take the most cumulative time.
The last line printed is one line of JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from euroflow import languages  # noqa: E402
from euroflow.data import manifest  # noqa: E402
from euroflow.paths import RunPaths  # noqa: E402

GOAL_RATIO = 1.3
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# Snakemake prints every planned job unless told not to; we time the planning, not the printing
QUIET = ["--quiet", "rules"]

BARE_SNAKEFILE = r'''
# Bare Snakemake, shaped like the euroflow DAG: per shard prepare -> per language and band duplicate
# pairs -> per language dedup -> weights ->
# tokenizer -> per shard tokenize -> blend -> pretrain -> export -> evaluation + quantization -> all.
SHARD_DIR = {shard_dir!r}
HPLT = {hplt!r}
LANGS = list(HPLT)
SHARDS = {{lang: [str(i) for i in range(1, {shards} + 1)] for lang in LANGS}}
BANDS = list(range({band_jobs}))
OUT = "out"


rule all:
    input:
        OUT + "/reports/parity.md",
        OUT + "/train/loss_curve.png",
        OUT + "/eval/report.md",
        OUT + "/quantized/quality.md",


rule contamination_index:
    output:
        OUT + "/decontamination/{{lang}}.npz",
    shell:
        "touch {{output}}"


rule prepare_shard:
    input:
        shard=lambda w: f"{{SHARD_DIR}}/{{HPLT[w.lang]}}/{{w.shard}}.jsonl.zst",
        contamination=OUT + "/decontamination/{{lang}}.npz",
    output:
        shard=OUT + "/filtered/{{lang}}/{{shard}}.jsonl.zst",
        signatures=OUT + "/filtered/{{lang}}/{{shard}}.sig.npz",
        lengths=OUT + "/filtered/{{lang}}/{{shard}}.lengths.npy",
        report=OUT + "/filtered/{{lang}}/{{shard}}.report.json",
    shell:
        "cp {{input.shard}} {{output.shard}} && touch {{output.signatures}} {{output.lengths}} {{output.report}}"


rule dedup_band:
    input:
        signatures=lambda w: expand(OUT + "/filtered/{{lang}}/{{shard}}.sig.npz", lang=w.lang, shard=SHARDS[w.lang]),
    output:
        OUT + "/dedup/{{lang}}/bands{{part}}.npz",
    shell:
        "touch {{output}}"


rule dedup_language:
    input:
        pairs=lambda w: expand(OUT + "/dedup/{{lang}}/bands{{part}}.npz", lang=w.lang, part=BANDS),
        reports=lambda w: expand(OUT + "/filtered/{{lang}}/{{shard}}.report.json", lang=w.lang, shard=SHARDS[w.lang]),
        signatures=lambda w: expand(OUT + "/filtered/{{lang}}/{{shard}}.sig.npz", lang=w.lang, shard=SHARDS[w.lang]),
        lengths=lambda w: expand(OUT + "/filtered/{{lang}}/{{shard}}.lengths.npy", lang=w.lang, shard=SHARDS[w.lang]),
    output:
        assignment=OUT + "/dedup/{{lang}}.npz",
        stats=OUT + "/stats/{{lang}}.json",
    shell:
        "touch {{output}}"


rule language_weights:
    input:
        expand(OUT + "/stats/{{lang}}.json", lang=LANGS),
    output:
        json=OUT + "/blend/weights.json",
        table=OUT + "/blend/weights.md",
    shell:
        "touch {{output}}"


rule train_tokenizer:
    input:
        shards=[f"{{OUT}}/filtered/{{lang}}/{{s}}.jsonl.zst" for lang in LANGS for s in SHARDS[lang][:4]],
        weights=OUT + "/blend/weights.json",
    output:
        directory(OUT + "/tokenizer"),
    shell:
        "mkdir -p {{output}}"


rule tokenize_shard:
    input:
        shard=OUT + "/filtered/{{lang}}/{{shard}}.jsonl.zst",
        assignment=OUT + "/dedup/{{lang}}.npz",
        tokenizer=OUT + "/tokenizer",
    output:
        multiext(OUT + "/tokenized/{{lang}}/{{shard}}.train", ".bin", ".idx"),
        multiext(OUT + "/tokenized/{{lang}}/{{shard}}.valid", ".bin", ".idx"),
        report=OUT + "/tokenized/{{lang}}/{{shard}}.json",
    shell:
        "touch {{output}}"


rule blend:
    input:
        weights=OUT + "/blend/weights.json",
        reports=[f"{{OUT}}/tokenized/{{lang}}/{{s}}.json" for lang in LANGS for s in SHARDS[lang]],
    output:
        json=OUT + "/blend/blend.json",
        table=OUT + "/blend/blend.md",
        per_split=OUT + "/blend/per_split_data_args.json",
    shell:
        "touch {{output}}"


rule tokenizer_parity:
    input:
        OUT + "/tokenizer",
    output:
        json=OUT + "/reports/parity.json",
        table=OUT + "/reports/parity.md",
    shell:
        "touch {{output}}"


rule pretrain:
    input:
        blend=OUT + "/blend/blend.json",
        tokenizer=OUT + "/tokenizer",
    output:
        checkpoints=directory(OUT + "/train/checkpoints"),
        log=OUT + "/train/train_log.jsonl",
        curve=OUT + "/train/loss_curve.png",
    shell:
        "mkdir -p {{output.checkpoints}} && touch {{output.log}} {{output.curve}}"


rule export_hf:
    input:
        checkpoints=OUT + "/train/checkpoints",
        tokenizer=OUT + "/tokenizer",
    output:
        directory(OUT + "/hf"),
    shell:
        "mkdir -p {{output}}"


rule bits_per_byte:
    input:
        OUT + "/hf",
    output:
        OUT + "/eval/bpb.json",
    shell:
        "touch {{output}}"


rule multiple_choice:
    input:
        OUT + "/hf",
    output:
        OUT + "/eval/multiple_choice.json",
    shell:
        "touch {{output}}"


rule evaluation_report:
    input:
        bpb=OUT + "/eval/bpb.json",
        mc=OUT + "/eval/multiple_choice.json",
    output:
        json=OUT + "/eval/report.json",
        table=OUT + "/eval/report.md",
        plot=OUT + "/eval/report.png",
    shell:
        "touch {{output}}"


rule gguf:
    input:
        OUT + "/hf",
    output:
        OUT + "/quantized/model-{{qtype}}.gguf",
    wildcard_constraints:
        qtype="F16|Q8_0|Q4_0",
    shell:
        "touch {{output}}"


rule int8:
    input:
        OUT + "/hf",
    output:
        OUT + "/quantized/model-int8.pt",
    shell:
        "touch {{output}}"


rule quantization_quality:
    input:
        model=OUT + "/hf",
        gguf=expand(OUT + "/quantized/model-{{qtype}}.gguf", qtype=["F16", "Q8_0", "Q4_0"]),
        int8=OUT + "/quantized/model-int8.pt",
    output:
        json=OUT + "/quantized/quality.json",
        table=OUT + "/quantized/quality.md",
    shell:
        "touch {{output}}"
'''

STARTUP_SNAKEFILE = '''
rule one:
    output: "one.txt"
    shell: "touch {output}"
'''


def make_shards(root: Path, langs: list[str], shards: int) -> Path:
    for lang in langs:
        lang_dir = root / languages.get(lang).hplt
        lang_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, shards + 1):
            (lang_dir / f"{i}.jsonl.zst").touch()
    return root


def write_config(path: Path, shard_dir: Path, manifest_path: Path | None, results: Path, langs: list[str]) -> Path:
    config = yaml.safe_load((REPO / "workflow" / "configs" / "eu-1b.yaml").read_text(encoding="utf-8"))
    if len(langs) < len(languages.ALL_KEYS):
        config["languages"] = list(langs)
    source = {"kind": "hplt", "shards": str(shard_dir)}
    if manifest_path is not None:
        source["manifest"] = str(manifest_path)
    config["data"]["source"] = source
    config["paths"]["results"] = str(results)
    if "provenance_db" in config["paths"]:
        config["paths"]["provenance_db"] = str(results / "provenance.sqlite")
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def job_counts(output: str) -> dict[str, int]:
    """The first 'Job stats' table of a dry run: {rule: count, ..., 'total': n}."""
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            if counts:
                break
            in_table = True
            continue
        if not in_table:
            continue
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
            if parts[0] == "total":
                break
    return counts


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(
    args: list[str], cwd: Path, env: dict[str, str], prefix: list[str] | None = None
) -> tuple[float, float, dict[str, int]]:
    """Wall and CPU seconds of one ``snakemake -n`` and the jobs it planned."""
    cmd = [*(prefix or [SNAKEMAKE]), "-n", "--cores", "1", *QUIET, *args]
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    counts = job_counts(proc.stdout + proc.stderr)
    if "total" not in counts:
        raise SystemExit(f"no job stats in the output of {' '.join(cmd)}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return elapsed, cpu, counts


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    ours = []
    for (filename, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        if filename.startswith(str(REPO)) and "/.venv/" not in filename:
            ours.append((ct, tt, nc, f"{os.path.relpath(filename, REPO)}:{line}({name})"))
    ours.sort(reverse=True)
    print(f"\nprofile {path}: this repository's functions by cumulative time (s)")
    print(f"{'cumulative':>10} {'own':>8} {'calls':>9}  function")
    for ct, tt, nc, where in ours[:top]:
        print(f"{ct:10.3f} {tt:8.3f} {nc:9d}  {where}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages-count", type=int, default=len(languages.ALL_KEYS))
    parser.add_argument("--shards", type=int, default=300, help="shards per language")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", default=None, help="also pass --profile profiles/<name> to the euroflow runs")
    parser.add_argument("--no-manifest-case", dest="no_manifest", action="store_false",
                        help="skip the case without a manifest")
    parser.add_argument("--cprofile", type=Path, default=None, help="profile one euroflow dry run into this file")
    opts = parser.parse_args(argv)

    langs = list(languages.ALL_KEYS[: opts.languages_count])
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="euroflow-dag-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        t0 = time.perf_counter()
        shard_dir = make_shards(work / "hplt", langs, opts.shards)
        manifest_path = work / "manifest.tsv"
        manifest.write_manifest(shard_dir, langs, manifest_path)
        results = work / "results"
        cfg = write_config(work / "run-manifest.yaml", shard_dir, manifest_path, results, langs)
        cfg_listing = write_config(work / "run-listing.yaml", shard_dir, None, results, langs)
        bare_dir = work / "bare"
        bare_dir.mkdir(exist_ok=True)
        hplt = {lang: languages.get(lang).hplt for lang in langs}
        band_jobs = len(RunPaths(yaml.safe_load(Path(cfg).read_text())).dedup_parts)
        (bare_dir / "Snakefile").write_text(
            BARE_SNAKEFILE.format(shard_dir=str(shard_dir), hplt=hplt, shards=opts.shards, band_jobs=band_jobs), encoding="utf-8"
        )
        startup_dir = work / "startup"
        startup_dir.mkdir(exist_ok=True)
        (startup_dir / "Snakefile").write_text(STARTUP_SNAKEFILE, encoding="utf-8")
        print(f"work dir {work}: {len(langs)} languages x {opts.shards} shards "
              f"({len(langs) * opts.shards} files, manifest {manifest_path.name}) in {time.perf_counter() - t0:.1f} s",
              flush=True)

        euroflow_common = ["--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO)]
        if opts.profile:
            euroflow_common += ["--profile", f"profiles/{opts.profile}"]
        cases: dict[str, list[str]] = {
            "bare": ["--snakefile", str(bare_dir / "Snakefile"), "--directory", str(bare_dir)],
            "euroflow": [*euroflow_common, "--configfile", str(cfg)],
        }
        if opts.no_manifest:
            cases["euroflow_no_manifest"] = [*euroflow_common, "--configfile", str(cfg_listing)]
        cases["startup"] = ["--snakefile", str(startup_dir / "Snakefile"), "--directory", str(startup_dir)]

        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu_times: dict[str, list[float]] = {name: [] for name in cases}
        counts: dict[str, dict[str, int]] = {}
        order = list(cases)
        for round_ in range(opts.repeat):
            for name in order if round_ % 2 == 0 else reversed(order):
                elapsed, cpu, counted = dry_run(cases[name], REPO, env)
                times[name].append(elapsed)
                cpu_times[name].append(cpu)
                counts[name] = counted
                print(f"  round {round_ + 1} {name:<22} {counted['total']:>7} jobs {elapsed:8.2f} s (cpu {cpu:6.2f} s)",
                      flush=True)

        want = len(langs) * opts.shards
        for name in ("euroflow", "euroflow_no_manifest"):
            if name not in counts:
                continue
            c = counts[name]
            if not (c.get("prepare_shard") == c.get("tokenize_shard") == want and c.get("dedup_language") == len(langs)):
                raise SystemExit(f"{name}: unexpected job counts {c} (want prepare_shard = tokenize_shard = {want}, "
                                 f"dedup_language = {len(langs)})")
            if c["total"] != counts["bare"]["total"]:
                raise SystemExit(f"{name}: {c['total']} jobs but the bare Snakefile has {counts['bare']['total']}")

        med = {name: statistics.median(ts) for name, ts in times.items()}
        cpu_med = {name: statistics.median(ts) for name, ts in cpu_times.items()}
        startup = med["startup"]
        print()
        print(f"{'case':<22} {'jobs':>7} {'median s':>9} {'min s':>7} {'ratio':>6} {'ratio w/o startup':>18} "
              f"{'cpu s':>7} {'cpu ratio':>9}")
        for name in cases:
            ratio = med[name] / med["bare"]
            net = (med[name] - startup) / (med["bare"] - startup) if med["bare"] > startup and name != "startup" else None
            print(f"{name:<22} {counts[name]['total']:>7} {med[name]:9.2f} {min(times[name]):7.2f} {ratio:6.2f} "
                  f"{'-' if net is None else f'{net:.2f}':>18} {cpu_med[name]:7.2f} {cpu_med[name] / cpu_med['bare']:9.2f}")
        print(f"(goal: ratio <= {GOAL_RATIO} (wall); 'startup' is a 1-job Snakefile, what any snakemake start costs "
              f"here; cpu: user + system seconds of the process tree; medians of {opts.repeat})")

        if opts.cprofile:
            profile_path = opts.cprofile.resolve()
            dry_run(cases["euroflow"], REPO, env, prefix=[sys.executable, "-m", "cProfile", "-o", str(profile_path), SNAKEMAKE])
            print_profile(profile_path)

        figures = {
            "jobs": counts["euroflow"]["total"],
            "euroflow_s": round(med["euroflow"], 3),
            "euroflow_no_manifest_s": round(med["euroflow_no_manifest"], 3) if "euroflow_no_manifest" in med else None,
            "bare_s": round(med["bare"], 3),
            "startup_s": round(startup, 3),
            "ratio": round(med["euroflow"] / med["bare"], 3),
            "cpu_ratio": round(cpu_med["euroflow"] / cpu_med["bare"], 3),
            "ratio_no_manifest": round(med["euroflow_no_manifest"] / med["bare"], 3) if "euroflow_no_manifest" in med else None,
            "ratio_without_startup": (
                round((med["euroflow"] - startup) / (med["bare"] - startup), 3) if med["bare"] > startup else None
            ),
            "goal_ratio": GOAL_RATIO,
            "repeat": opts.repeat,
            "shards": want,
            "languages": len(langs),
        }
        print(json.dumps(figures))
    finally:
        if not opts.keep and opts.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        elif opts.keep or opts.workdir is not None:
            print(f"(kept {work})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
