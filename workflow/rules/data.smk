# Data preparation, one job per crawl shard where it can be: prepare (filter, normalize, sign) each shard ->
# duplicate pairs per language and band -> clusters per language -> language weights -> tokenize each
# shard -> blend.
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


rule contamination_index:
    """The word n-grams of the evaluation sets the run uses in one language (FLORES, its multiple-choice
    sets there, ours and lm-eval's), which its training documents must not share."""
    input:
        lambda wildcards: paths.contamination_inputs(wildcards.lang),
    output:
        paths.contamination_index("{lang}"),
    log:
        paths.log("contamination_index/{lang}"),
    params:
        data_root=paths.bundle_root,
        tasks=paths.mc_sets,
        ngram=filter_params(config["data"])["decontamination"]["ngram"],
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data contamination-index --data-root {params.data_root:q} --lang {wildcards.lang:q}"
        " --tasks {params.tasks:q} --ngram {params.ngram:q} --out {output:q} > {log:q} 2>&1"


rule prepare_shard:
    """Filters (HPLT label, doc score, language, lang-ID agreement, length), control characters, NFC;
    decontamination against the evaluation sets; signatures."""
    input:
        shard=lambda wildcards: paths.raw_input(wildcards.lang, wildcards.shard),
        contamination=paths.contamination_index("{lang}"),
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
        "euroflow data prepare --config {params.config:q} --lang {wildcards.lang:q} --input {input.shard:q}"
        " --contamination-index {input.contamination:q}"
        " --out {output.shard:q} --signatures {output.signatures:q} --lengths {output.lengths:q}"
        " --report {output.report:q} > {log:q} 2>&1"


rule dedup_band:
    """Duplicate pairs of some bands across one language's shards, each sorted on disk a key range at a
    time (band 0: exact keys; 1..b: MinHash LSH bands). The command finds the signatures through the
    run's shard listing."""
    input:
        signatures=lambda wildcards: paths.filtered_all(wildcards.lang, "sig.npz"),
    output:
        paths.dedup_pairs("{lang}", "{part}"),
    log:
        paths.log("dedup_band/{lang}/{part}"),
    params:
        config=paths.resolved_config,
        near_dedup=filter_params(config["data"])["near_dedup"],
        bands=lambda wildcards: paths.dedup_parts[int(wildcards.part)],
    wildcard_constraints:
        part=r"\d+",
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data dedup-band --config {params.config:q} --lang {wildcards.lang:q} --bands {params.bands:q}"
        " --out {output:q} > {log:q} 2>&1"


rule dedup_language:
    """The bands' pairs joined into duplicate clusters (the first document of each is kept); train/valid
    split; statistics."""
    input:
        reports=lambda wildcards: paths.filtered_all(wildcards.lang, "report.json"),
        signatures=lambda wildcards: paths.filtered_all(wildcards.lang, "sig.npz"),
        lengths=lambda wildcards: paths.filtered_all(wildcards.lang, "lengths.npy"),
        pairs=lambda wildcards: paths.dedup_pair_files(wildcards.lang),
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
        " --pairs {input.pairs:q} --out {output.assignment:q} --stats {output.stats:q} > {log:q} 2>&1"


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
