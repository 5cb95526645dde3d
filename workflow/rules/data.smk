# Data preparation: HPLT-style shards -> clean shards + statistics -> language blend -> indexed datasets.
# Rule bodies call `euroflow data ...` (src/euroflow/data/cli.py).


rule demo_shard:
    """Build one HPLT v2 style shard per language from NTREX-128 (the demo's stand-in for a crawl)."""
    output:
        paths.raw_shard("{lang}"),
    log:
        paths.log("demo_shard/{lang}"),
    params:
        data_root=paths.data_root,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data ntrex-shard --data-root {params.data_root} --lang {wildcards.lang}"
        " --out {output} > {log} 2>&1"


rule clean_shard:
    """Unicode NFC, HPLT filter == keep, length filter, exact dedup; per-language statistics."""
    input:
        lambda wildcards: paths.raw_inputs(wildcards.lang),
    output:
        shard=paths.clean_shard("{lang}"),
        stats=paths.shard_stats("{lang}"),
    log:
        paths.log("clean_shard/{lang}"),
    params:
        config=paths.resolved_config,
        filters={k: v for k, v in config["data"].items() if k != "source"},
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data clean --config {params.config} --lang {wildcards.lang} --input {input}"
        " --out {output.shard}"
        " --stats {output.stats} > {log} 2>&1"


rule blend:
    """Turn per-language sizes into sampling weights (temperature, UniMax or explicit)."""
    input:
        expand(paths.shard_stats("{lang}"), lang=LANGS),
    output:
        json=paths.blend,
        table=f"{paths.blend_dir}/blend.md",
        data_args=f"{paths.blend_dir}/data_args.txt",
    log:
        paths.log("blend"),
    params:
        config=paths.resolved_config,
        sampling=config["sampling"],
        prefix_dir=paths.tokenized_dir,
        out_dir=lambda wildcards, output: Path(output.json).parent,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data blend --config {params.config} --stats {input} --prefix-dir {params.prefix_dir}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule tokenize_language:
    """Tokenize a clean shard into a Megatron-Core indexed dataset (.bin/.idx), EOD appended."""
    input:
        shard=paths.clean_shard("{lang}"),
        tokenizer=paths.tokenizer,
    output:
        multiext(paths.tokenized_prefix("{lang}"), ".bin", ".idx"),
    log:
        paths.log("tokenize/{lang}"),
    params:
        prefix=paths.tokenized_prefix("{lang}"),
    threads: 1
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow data tokenize --input {input.shard} --tokenizer {input.tokenizer}"
        " --out-prefix {params.prefix} --threads {threads} > {log} 2>&1"
