# euroflow: data preparation -> tokenizer -> Megatron-Core pretraining -> evaluation -> quantization.
# Run config: --configfile workflow/configs/<name>.yaml (default: the tiny CPU demo).
from pathlib import Path

from euroflow.config import validate as validate_run_config, write_resolved
from euroflow.paths import RunPaths
from euroflow.provenance import announce_run_context
from euroflow.provenance.sidecar import record_job_sidecars
from euroflow.sites.current import pretrain_launch_args
from euroflow.workflow import put_euroflow_on_path


configfile: "workflow/configs/tiny.yaml"


put_euroflow_on_path()
validate_run_config(config, source=" + ".join(map(str, workflow.configfiles)) or "run config")
paths = RunPaths(config)
LANGS = config["languages"]
write_resolved(config, paths.resolved_config)


wildcard_constraints:
    lang="|".join(LANGS),
    shard=r"[^.]+",


onstart:
    # every job of this run is recorded by the euroflow logger plugin (profiles set `logger: [euroflow]`)
    announce_run_context(
        config,
        db=paths.provenance_db,
        config_path=workflow.configfiles[-1] if workflow.configfiles else None,
    )


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


# after the last rule: each job also writes its own record next to its first output (*.prov.json)
record_job_sidecars(workflow)
