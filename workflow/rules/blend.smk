# Language weights -> tokenize each shard into train/valid indexed datasets -> the Megatron blend per split.
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
        "euroflow data weights --config {params.config} --stats {input} --out {output.json} > {log} 2>&1"


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
        "euroflow data tokenize --input {input.shard} --tokenizer {input.tokenizer}"
        " --assignment {input.assignment} --shard-id {wildcards.shard}"
        " --out-prefix {params.train} --valid-prefix {params.valid} --threads {threads}"
        " --report {output.report} > {log} 2>&1"


rule blend:
    """The Megatron blend per split (every shard's prefix, weighted) and the table of tokens and epochs.
    The command finds the shard reports through the run's manifest: 10k paths do not fit one command line."""
    input:
        weights=paths.weights,
        reports=[report for reports in paths.tokenized_reports().values() for report in reports],
    output:
        json=paths.blend,
        table=f"{paths.blend_dir}/blend.md",
        per_split=f"{paths.blend_dir}/per_split_data_args.json",
    log:
        paths.log("blend"),
    params:
        config=paths.resolved_config,
        out_dir=lambda wildcards, output: Path(output.json).parent,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data blend --config {params.config} --weights {input.weights} --out-dir {params.out_dir} > {log} 2>&1"
