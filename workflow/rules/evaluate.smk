# Evaluation: bits-per-byte on FLORES test for every language, multiple-choice accuracy, the same sets
# through lm-evaluation-harness, report.
# Rule bodies call `euroflow evaluate ...` (src/euroflow/evaluate/cli.py).


rule bits_per_byte:
    input:
        model=paths.hf_model,
        flores=paths.bundle_flores(config["evaluation"]["bpb_languages"]),
    output:
        paths.eval_file("bpb.json"),
    log:
        paths.log("bits_per_byte"),
    params:
        data_root=paths.bundle_root,
        languages=",".join(config["evaluation"]["bpb_languages"]),
        batch_size=config["evaluation"]["batch_size"],
    threads: 1
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow evaluate bpb --model {input.model:q} --data-root {params.data_root:q} --languages {params.languages:q}"
        " --batch-size {params.batch_size:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule multiple_choice:
    input:
        model=paths.hf_model,
        sets=paths.bundle_mc(config["evaluation"]["multiple_choice"], LANGS),
    output:
        paths.eval_file("multiple_choice.json"),
    log:
        paths.log("multiple_choice"),
    params:
        data_root=paths.bundle_root,
        tasks=",".join(config["evaluation"]["multiple_choice"]),
        languages=",".join(LANGS),
        max_items=config["evaluation"].get("max_mc_items", 0),
        batch_size=config["evaluation"]["batch_size"],
    threads: 1
    conda:
        "../../envs/euroflow.yaml"
    shell:
        "euroflow evaluate mc --model {input.model:q} --data-root {params.data_root:q} --tasks {params.tasks:q}"
        " --languages {params.languages:q} --max-items {params.max_items:q} --batch-size {params.batch_size:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


LM_EVAL = config["evaluation"]["lm_eval"]
LM_EVAL_MC_SETS = [s for s in LM_EVAL["sets"] if s != "flores"]


LM_EVAL_ON = bool(LM_EVAL["sets"] or LM_EVAL["extra_tasks"])


if LM_EVAL_ON:

    rule lm_eval:
        input:
            model=paths.hf_model,
            sets=paths.bundle_mc(LM_EVAL_MC_SETS, LANGS),
            flores=paths.bundle_flores(config["evaluation"]["bpb_languages"]) if "flores" in LM_EVAL["sets"] else [],
        output:
            results=paths.eval_file("lm_eval.json"),
            tasks=directory(paths.eval_file("lm_eval_tasks")),
        log:
            paths.log("lm_eval"),
        params:
            data_root=paths.bundle_root,
            sets=",".join(LM_EVAL["sets"]),
            languages=",".join(LANGS),
            flores_languages=",".join(config["evaluation"]["bpb_languages"]),
            include=[f"--include-path={path}" for path in LM_EVAL["include_paths"]],
            extra_tasks=",".join(LM_EVAL["extra_tasks"]),
            max_items=LM_EVAL.get("max_items", config["evaluation"].get("max_mc_items", 0)),
            batch_size=config["evaluation"]["batch_size"],
        threads: 1
        conda:
            "../../envs/euroflow.yaml"
        shell:
            "euroflow evaluate lm-eval --model {input.model:q} --data-root {params.data_root:q} --sets={params.sets:q}"
            " --languages {params.languages:q} --flores-languages {params.flores_languages:q} {params.include:q}"
            " --extra-tasks={params.extra_tasks:q} --max-items {params.max_items:q} --batch-size {params.batch_size:q}"
            " --threads {threads} --tasks-dir {output.tasks:q} --out {output.results:q} > {log:q} 2>&1"


DURING_TRAINING = config["evaluation"]["during_training"]["every_n_checkpoints"] > 0


if DURING_TRAINING:

    rule learning_curve:
        """bpb per language at every evaluated checkpoint; the evaluations ran during training, each in its
        own process started by pretrain (evaluation.during_training)."""
        input:
            log=paths.train_log,
        output:
            json=paths.eval_file("learning_curve.json"),
            table=paths.eval_file("learning_curve.md"),
            plot=paths.eval_file("learning_curve.png"),
        log:
            paths.log("learning_curve"),
        params:
            evaluations=paths.checkpoint_evaluations,
            run=config["run"]["name"],
        conda:
            "../../envs/euroflow.yaml"
        shell:
            "euroflow evaluate learning-curve --evaluations {params.evaluations:q} --run-name {params.run:q}"
            " --out-json {output.json:q} --out-md {output.table:q} --out-png {output.plot:q} > {log:q} 2>&1"


rule evaluation_report:
    input:
        bpb=paths.eval_file("bpb.json"),
        mc=paths.eval_file("multiple_choice.json"),
        lm_eval=paths.eval_file("lm_eval.json") if LM_EVAL_ON else [],
        curve=paths.eval_file("learning_curve.json") if DURING_TRAINING else [],
    output:
        json=paths.eval_file("report.json"),
        table=paths.eval_file("report.md"),
        plot=paths.eval_file("report.png"),
    log:
        paths.log("evaluation_report"),
    conda:
        "../../envs/euroflow.yaml"
    shell:
        # --opt=VALUE: an empty input list (a part switched off) leaves --opt= rather than a missing word
        "euroflow evaluate report --bpb {input.bpb:q} --mc {input.mc:q} --lm-eval={input.lm_eval:q}"
        " --learning-curve={input.curve:q} --out-json {output.json:q}"
        " --out-md {output.table:q} --out-png {output.plot:q} > {log:q} 2>&1"
