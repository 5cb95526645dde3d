"""The values the provenance store's status and kind columns take, importable without SQLAlchemy
(the fast read path of ``euroflow prov runs`` offers them as choices)."""

RUN_STATUSES = ("running", "success", "failed", "incomplete")
JOB_STATUSES = ("running", "success", "failed", "incomplete")
ARTIFACT_KINDS = ("file", "directory", "missing", "pipe", "storage")
# what an artifact is to the pipeline (euroflow.paths.artifact_category decides from the layout)
ARTIFACT_CATEGORIES = (
    "shard", "dedup", "statistics", "blend", "tokenizer", "indexed_dataset", "checkpoint", "hf_export",
    "eval_report", "quantized_model", "report", "plot", "training_log", "config", "log", "other",
)
