# Pretraining with Megatron-Core (gloo on CPU, NCCL on GPUs) and export to a Hugging Face Llama.
# Rule bodies call `euroflow train ...` (src/euroflow/train/cli.py).


rule pretrain:
    """Llama-style GPTModel on the blended indexed datasets; resumes from the newest intact checkpoint.
    On a Slurm site it runs on the login node and submits the training job itself (submitit,
    requeued at the walltime); the profile's resources for this rule size that job."""
    localrule: True
    input:
        blend=paths.blend,
        tokenizer=paths.tokenizer,
        # what the blend names, so that provenance has the checksum of every dataset trained on
        datasets=paths.merged_datasets,
    output:
        # what exists only once training has finished: checkpoints/ and progress.jsonl are state the
        # trainer resumes from, never outputs, so that no failure of this rule removes them
        log=paths.train_log,
        curve=paths.loss_curve,
        final=directory(paths.final_checkpoint),
    log:
        paths.log("pretrain"),
    params:
        config=paths.resolved_config,
        science={k: config[k] for k in ("model", "training")},
        out_dir=lambda wildcards, output: Path(output.log).parent,
        slurm_allocations=paths.slurm_allocations,
        launch=lambda wildcards, resources: pretrain_launch_args(resources, paths.slurm_allocations),
    threads: 2
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow train pretrain --config {params.config:q} --blend {input.blend:q} --tokenizer {input.tokenizer:q}"
        " --out {params.out_dir:q} {params.launch:q} 2>&1 | tee {log:q}"


rule export_hf:
    """Convert the final checkpoint to LlamaForCausalLM; fails unless logits match Megatron (< 1e-4)."""
    input:
        checkpoint=paths.final_checkpoint,
        tokenizer=paths.tokenizer,
    output:
        directory(paths.hf_model),
    log:
        paths.log("export_hf"),
    params:
        config=paths.resolved_config,
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow train export-hf --config {params.config:q} --checkpoints {input.checkpoint:q}"
        " --tokenizer {input.tokenizer:q} --out {output:q} > {log:q} 2>&1"
