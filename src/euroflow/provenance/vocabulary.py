"""The values the provenance store's status and kind columns take, importable without SQLAlchemy
(the fast read path of ``euroflow prov runs`` offers them as choices)."""

# interrupted: the Snakemake head ended without closing the run (killed, node lost); noticed later
RUN_STATUSES = ("running", "success", "failed", "incomplete", "interrupted")
JOB_STATUSES = ("running", "success", "failed", "incomplete", "interrupted")
ARTIFACT_KINDS = ("file", "directory", "missing", "pipe", "storage")
# what an artifact is to the pipeline (euroflow.paths.artifact_category decides from the layout)
ARTIFACT_CATEGORIES = (
    "shard", "dedup", "statistics", "blend", "tokenizer", "indexed_dataset", "checkpoint", "hf_export",
    "eval_report", "importance_matrix", "quantized_model", "report", "plot", "training_log", "config", "log", "other",
)
