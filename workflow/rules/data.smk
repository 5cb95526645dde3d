# Data preparation, one job per crawl shard where it can be: prepare (filter, normalize, sign) each shard ->
# deduplicate each language across its shards -> language weights -> tokenize each shard -> blend.
# Shards come from the run's manifest (paths.shards), never from globbing in a rule.
# Rule bodies call `euroflow data ...` (src/euroflow/data/cli.py).
from euroflow.data.prepare import filter_params


rule demo_shard:
    """Build one HPLT v2 style shard per language from NTREX-128 (the demo's stand-in for a crawl)."""
    input:
        paths.bundle_ntrex("{lang}"),
    output:
        paths.raw_shard("{lang}"),
    log:
        paths.log("demo_shard/{lang}"),
    params:
        data_root=paths.bundle_root,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data ntrex-shard --data-root {params.data_root:q} --lang {wildcards.lang:q} --out {output:q} > {log:q} 2>&1"


rule prepare_shard:
    """Filters (HPLT label, doc score, language, lang-ID agreement, length), control characters, NFC; signatures."""
    input:
        lambda wildcards: paths.raw_input(wildcards.lang, wildcards.shard),
    output:
        shard=paths.filtered("{lang}", "{shard}", "jsonl.zst"),
        signatures=paths.filtered("{lang}", "{shard}", "sig.npz"),
        lengths=paths.filtered("{lang}", "{shard}", "lengths.npy"),
        report=paths.filtered("{lang}", "{shard}", "report.json"),
    log:
        paths.log("prepare_shard/{lang}/{shard}"),
    params:
        config=paths.resolved_config,
        filters=filter_params(config["data"]),
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data prepare --config {params.config:q} --lang {wildcards.lang:q} --input {input:q}"
        " --out {output.shard:q} --signatures {output.signatures:q} --lengths {output.lengths:q}"
        " --report {output.report:q} > {log:q} 2>&1"


rule dedup_language:
    """Exact and MinHash LSH near-duplicates across one language's shards; train/valid split; statistics."""
    input:
        reports=lambda wildcards: paths.filtered_all(wildcards.lang, "report.json"),
        signatures=lambda wildcards: paths.filtered_all(wildcards.lang, "sig.npz"),
        lengths=lambda wildcards: paths.filtered_all(wildcards.lang, "lengths.npy"),
    output:
        assignment=paths.dedup_assignment("{lang}"),
        stats=paths.shard_stats("{lang}"),
    log:
        paths.log("dedup_language/{lang}"),
    params:
        config=paths.resolved_config,
        filters={k: v for k, v in config["data"].items() if k not in ("source", "require_valid")},
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data dedup --config {params.config:q} --lang {wildcards.lang:q} --reports {input.reports:q}"
        " --out {output.assignment:q} --stats {output.stats:q} > {log:q} 2>&1"


rule data_bundle:
    """The files this run reads from the shared data bundle (training text and evaluation sets):
    dataset, licence and sha256 of each, in one manifest."""
    input:
        paths.bundle_inputs,
    output:
        paths.bundle_manifest,
    log:
        paths.log("data_bundle"),
    params:
        data_root=paths.bundle_root,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data bundle --data-root {params.data_root:q} --out {output:q} {input:q} > {log:q} 2>&1"
