# Tokenizer: SentencePiece BPE (byte fallback) trained on a blend-weighted sample; fertility/parity report.
# Rule bodies call `euroflow tokenizer ...` (src/euroflow/tokenizer/cli.py).


rule train_tokenizer:
    """Train on text sampled with the language weights, so small languages are not starved; reads the
    first `tokenizer.shards_per_language` prepared shards of each language."""
    input:
        shards=[shard for lang in LANGS for shard in paths.tokenizer_shards(lang)],
        weights=paths.weights,
    output:
        directory(paths.tokenizer),
    log:
        paths.log("train_tokenizer"),
    params:
        config=paths.resolved_config,
        tokenizer=config["tokenizer"],
        seed=config["run"]["seed"],
    threads: 2
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow tokenizer train --config {params.config:q} --blend {input.weights:q}"
        " --out {output:q} > {log:q} 2>&1"


rule tokenizer_parity:
    """Tokens per word/sentence and parity relative to English on FLORES train+dev (never trained on)."""
    input:
        tokenizer=paths.tokenizer,
        flores=paths.bundle_flores(["en", *LANGS]),
    output:
        json=paths.parity_report("json"),
        table=paths.parity_report("md"),
    log:
        paths.log("tokenizer_parity"),
    params:
        data_root=paths.bundle_root,
        languages=LANGS,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow tokenizer parity --tokenizer {input.tokenizer:q} --data-root {params.data_root:q}"
        " --languages {params.languages:q} --out-json {output.json:q} --out-md {output.table:q} > {log:q} 2>&1"
