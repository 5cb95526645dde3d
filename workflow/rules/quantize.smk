# Quantization for edge devices: GGUF (llama.cpp; K-quants by its own quantizer with an importance matrix) and torch int8
# Rule bodies call `euroflow quantize ...` (src/euroflow/quantize/cli.py).
from euroflow.quantize.quality import gate_arguments


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
        plot=paths.quality("png"),
    log:
        paths.log("quantization_quality"),
    params:
        data_root=paths.bundle_root,
        languages=",".join(config["evaluation"]["bpb_languages"]),
        int8=lambda wildcards, input: ["--int8", input.int8[0]] if input.int8 else [],
        max_sentences=["--max-sentences", config["quantization"]["max_sentences"]] if config["quantization"]["max_sentences"] else [],
        batch_size=config["evaluation"]["batch_size"],
    threads: 1
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize quality --model {input.model:q} --gguf {input.gguf:q} {params.int8:q}"
        " --data-root {params.data_root:q} --languages {params.languages:q} {params.max_sentences:q} --batch-size {params.batch_size:q}"
        " --threads {threads} --out-json {output.json:q} --out-md {output.table:q} --out-png {output.plot:q} > {log:q} 2>&1"


rule quantization_gates:
    """Every variant and language against its release gate; fails with the table of what broke."""
    input:
        paths.quality("json"),
    output:
        json=paths.gates("json"),
        table=paths.gates("md"),
    log:
        paths.log("quantization_gates"),
    params:
        gates=gate_arguments(config["quantization"]),
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize gates --quality {input:q} {params.gates:q} --out-json {output.json:q} --out-md {output.table:q}"
        " > {log:q} 2>&1"


IMATRIX = config["quantization"]["imatrix"]


rule imatrix:
    """llama.cpp's importance matrix of the model over the training data of every language (never evaluation text)."""
    input:
        model=paths.hf_model,
        datasets=[paths.merged_prefix(lang, "train") + ext for lang in config["languages"] for ext in (".bin", ".idx")],
    output:
        paths.imatrix,
    log:
        paths.log("imatrix"),
    params:
        data=[f"{lang}={paths.merged_prefix(lang, 'train')}" for lang in config["languages"]],
        tokens=IMATRIX["tokens_per_language"],
        chunk=["--chunk-size", IMATRIX["chunk_size"]] if IMATRIX["chunk_size"] else [],
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize imatrix --model {input.model:q} --data {params.data:q} --tokens-per-language {params.tokens:q}"
        " {params.chunk:q} --out {output:q} > {log:q} 2>&1"


rule gguf_kquant:
    """A K-quant by llama.cpp's own quantizer from the F16 GGUF, guided by the importance matrix."""
    input:
        f16=paths.gguf("F16"),
        imatrix=[paths.imatrix] if IMATRIX["tokens_per_language"] else [],
    output:
        paths.gguf("{kquant}"),
    log:
        paths.log("gguf/{kquant}"),
    wildcard_constraints:
        kquant="Q6_K|Q5_K_M|Q4_K_M",
    params:
        imatrix=lambda wildcards, input: ["--imatrix", input.imatrix[0]] if input.imatrix else [],
    threads: 2
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow quantize kquant --source {input.f16:q} --type {wildcards.kquant:q} {params.imatrix:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"
