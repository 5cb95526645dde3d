# Quantization for edge devices: GGUF (llama.cpp) and torch int8 weight-only, with a quality table.
# Rule bodies call `euroflow quantize ...` (src/euroflow/quantize/cli.py).


rule gguf:
    input:
        paths.hf_model,
    output:
        paths.gguf("{qtype}"),
    log:
        paths.log("gguf/{qtype}"),
    wildcard_constraints:
        qtype="F16|Q8_0|Q4_0",
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize gguf --model {input:q} --type {wildcards.qtype:q} --out {output:q} > {log:q} 2>&1"


rule int8:
    input:
        paths.hf_model,
    output:
        paths.int8,
    log:
        paths.log("int8"),
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize int8 --model {input:q} --out {output:q} > {log:q} 2>&1"


rule quantization_quality:
    """Bits-per-byte of every variant on the FLORES test sentences, against the unquantized model."""
    input:
        model=paths.hf_model,
        gguf=[paths.gguf(q) for q in config["quantization"]["gguf"]],
        int8=[paths.int8] if config["quantization"]["torch_int8"] else [],
        flores=paths.bundle_flores(config["evaluation"]["bpb_languages"]),
    output:
        json=paths.quality("json"),
        table=paths.quality("md"),
    log:
        paths.log("quantization_quality"),
    params:
        data_root=paths.bundle_root,
        languages=",".join(config["evaluation"]["bpb_languages"]),
        int8=lambda wildcards, input: ["--int8", input.int8[0]] if input.int8 else [],
        batch_size=config["evaluation"]["batch_size"],
    threads: 1
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize quality --model {input.model:q} --gguf {input.gguf:q} {params.int8:q}"
        " --data-root {params.data_root:q} --languages {params.languages:q} --batch-size {params.batch_size:q}"
        " --threads {threads} --out-json {output.json:q} --out-md {output.table:q} > {log:q} 2>&1"
