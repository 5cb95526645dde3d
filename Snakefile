# euroflow: data preparation -> tokenizer -> Megatron-Core pretraining -> evaluation -> quantization.
# Run config: exactly the --configfile(s) given (plus --config values); without one, the tiny CPU demo.
from pathlib import Path

from euroflow.config import write_resolved
from euroflow.paths import RunPaths
from euroflow.provenance import announce_run_context
from euroflow.provenance.sidecar import record_job_sidecars
from euroflow.sites.current import check_submission_account, pretrain_launch_args
from euroflow.workflow import one_line_errors, put_euroflow_on_path, resolve_run_config


put_euroflow_on_path()
with one_line_errors():
    CONFIG_FILES = resolve_run_config(config, workflow.overwrite_configfiles, workflow.basedir)
    paths = RunPaths(config)
    paths.check_sources()
    if workflow.is_main_process:
        check_submission_account(workflow.basedir)
    write_resolved(config, paths.resolved_config)
LANGS = config["languages"]


wildcard_constraints:
    lang="|".join(LANGS),
    shard=r"[^.]+",


onstart:
    # every job of this run is recorded by the euroflow logger plugin (profiles set `logger: [euroflow]`)
    announce_run_context(config, db=paths.provenance_db, config_path=CONFIG_FILES[-1])


include: "workflow/rules/data.smk"
include: "workflow/rules/blend.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/quantize.smk"


rule all:
    default_target: True
    input:
        paths.parity_report("md"),
        paths.loss_curve,
        paths.eval_file("report.md"),
        paths.quality("md"),
        paths.gates("md"),
        paths.bundle_manifest,


# after the last rule: each job also writes its own record next to its first output (*.prov.json)
record_job_sidecars(workflow)
