# Language weights -> tokenize each shard into train/valid indexed datasets -> merge them per language
# -> the Megatron blend per split.
# Rule bodies call `euroflow data ...` (src/euroflow/data/cli.py).


rule language_weights:
    """Sampling weights per language (temperature, UniMax or explicit) from the statistics after dedup."""
    input:
        expand(paths.shard_stats("{lang}"), lang=LANGS),
    output:
        json=paths.weights,
        table=f"{paths.blend_dir}/weights.md",
    log:
        paths.log("language_weights"),
    params:
        config=paths.resolved_config,
        sampling=config["sampling"],
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data weights --config {params.config:q} --stats {input:q} --out {output.json:q} > {log:q} 2>&1"


rule tokenize_shard:
    """One shard's kept documents -> <shard>.train and <shard>.valid indexed datasets (.bin/.idx), EOD appended."""
    input:
        shard=paths.filtered("{lang}", "{shard}", "jsonl.zst"),
        assignment=paths.dedup_assignment("{lang}"),
        tokenizer=paths.tokenizer,
    output:
        multiext(paths.tokenized_prefix("{lang}", "{shard}", "train"), ".bin", ".idx"),
        multiext(paths.tokenized_prefix("{lang}", "{shard}", "valid"), ".bin", ".idx"),
        report=paths.tokenized_report("{lang}", "{shard}"),
    log:
        paths.log("tokenize_shard/{lang}/{shard}"),
    params:
        train=paths.tokenized_prefix("{lang}", "{shard}", "train"),
        valid=paths.tokenized_prefix("{lang}", "{shard}", "valid"),
    threads: 2
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data tokenize --input {input.shard:q} --tokenizer {input.tokenizer:q}"
        " --assignment {input.assignment:q} --shard-id {wildcards.shard:q}"
        " --out-prefix {params.train:q} --valid-prefix {params.valid:q} --threads {threads}"
        " --report {output.report:q} > {log:q} 2>&1"


rule merge_language:
    """One language's per-shard datasets -> one indexed dataset per split, so the blend has one prefix per
    language and split. The command finds the shard reports through the run's shard listing."""
    input:
        datasets=lambda wildcards: paths.tokenized_files(wildcards.lang),
        reports=lambda wildcards: paths.tokenized_reports()[wildcards.lang],
    output:
        multiext(paths.merged_prefix("{lang}", "train"), ".bin", ".idx"),
        multiext(paths.merged_prefix("{lang}", "valid"), ".bin", ".idx"),
        report=paths.merged_report("{lang}"),
    log:
        paths.log("merge_language/{lang}"),
    params:
        config=paths.resolved_config,
        train=paths.merged_prefix("{lang}", "train"),
        valid=paths.merged_prefix("{lang}", "valid"),
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data merge --config {params.config:q} --lang {wildcards.lang:q}"
        " --train-prefix {params.train:q} --valid-prefix {params.valid:q} --report {output.report:q} > {log:q} 2>&1"


rule blend:
    """The Megatron blend per split (one merged dataset per language and split, weighted) and the table
    of tokens and epochs."""
    input:
        weights=paths.weights,
        reports=[paths.merged_report(lang) for lang in LANGS],
    output:
        json=paths.blend,
        table=f"{paths.blend_dir}/blend.md",
        per_split=f"{paths.blend_dir}/per_split_data_args.json",
    log:
        paths.log("blend"),
    params:
        config=paths.resolved_config,
        require_valid=config["data"]["require_valid"],
        out_dir=lambda wildcards, output: Path(output.json).parent,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data blend --config {params.config:q} --weights {input.weights:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"
