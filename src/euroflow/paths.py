"""Where every artifact of a run lives: the one definition of the output layout.

The Snakefile, the tests and the provenance tools all ask this class, so a path is spelled once.
Methods take a language key or a Snakemake wildcard pattern such as ``"{lang}"``.
"""

from __future__ import annotations

from pathlib import Path

from euroflow import config as run_config
from euroflow.errors import EuroflowError


class RunPaths:
    def __init__(self, config: dict):
        self.config = config
        self.root = Path(config["paths"]["results"]) / config["run"]["name"]

    def _p(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))

    # run-level
    @property
    def resolved_config(self) -> str:
        return self._p("config.resolved.json")

    @property
    def data_root(self) -> str:
        return str(run_config.data_root(self.config))

    @property
    def provenance_db(self) -> str:
        return self.config["paths"]["provenance_db"]

    def log(self, name: str) -> str:
        return self._p("logs", f"{name}.log")

    # data
    def raw_inputs(self, lang: str) -> list[str]:
        """The crawl shards of one language: built from NTREX for the demo, else found on disk."""
        source = self.config["data"]["source"]
        if source["kind"] == "ntrex-demo":
            return [self.raw_shard(lang)]
        from euroflow.languages import get

        found = sorted(str(p) for p in (Path(source["shards"]) / get(lang).hplt).glob("*.jsonl.zst"))
        if not found:
            raise EuroflowError(
                f"data.source.shards: no {get(lang).hplt}/*.jsonl.zst under {source['shards']} for language {lang}"
            )
        return found

    def raw_shard(self, lang: str) -> str:
        return self._p("data", "raw", f"{lang}.jsonl.zst")

    def clean_shard(self, lang: str) -> str:
        return self._p("data", "clean", f"{lang}.jsonl.zst")

    def shard_stats(self, lang: str) -> str:
        return self._p("data", "stats", f"{lang}.json")

    @property
    def blend_dir(self) -> str:
        return self._p("data", "blend")

    @property
    def blend(self) -> str:
        return self._p("data", "blend", "blend.json")

    @property
    def tokenized_dir(self) -> str:
        return self._p("data", "tokenized")

    def tokenized_prefix(self, lang: str) -> str:
        return self._p("data", "tokenized", lang)

    # tokenizer
    @property
    def tokenizer(self) -> str:
        return self._p("tokenizer")

    def parity_report(self, ext: str) -> str:
        return self._p("reports", f"tokenizer_parity.{ext}")

    # training
    @property
    def train_dir(self) -> str:
        return self._p("train")

    @property
    def checkpoints(self) -> str:
        return self._p("train", "checkpoints")

    @property
    def train_log(self) -> str:
        return self._p("train", "train_log.jsonl")

    @property
    def slurm_allocations(self) -> str:
        """One JSON line per Slurm allocation of the training job (requeues included)."""
        return self._p("train", "slurm_allocations.jsonl")

    @property
    def loss_curve(self) -> str:
        return self._p("train", "loss_curve.png")

    @property
    def hf_model(self) -> str:
        return self._p("hf")

    # evaluation
    def eval_file(self, name: str) -> str:
        return self._p("eval", name)

    # quantization
    def gguf(self, qtype: str) -> str:
        return self._p("quantized", f"{self.config['run']['name']}-{qtype}.gguf")

    @property
    def int8(self) -> str:
        return self._p("quantized", f"{self.config['run']['name']}-int8.pt")

    def quality(self, ext: str) -> str:
        return self._p("quantized", f"quality.{ext}")


def artifact_category(path: str) -> str:
    """What a file or directory is to the pipeline (provenance's artifact category), read from
    where :class:`RunPaths` puts it; files outside the layout are classified by their suffix."""
    parts = Path(path).parts
    name = parts[-1] if parts else ""

    def within(*segments: str) -> bool:
        """The path is the directory ``a/b`` or lies below it, wherever it sits."""
        n = len(segments)
        return any(parts[i : i + n] == segments for i in range(len(parts) - n + 1))

    if within("logs") or name.endswith(".log"):
        return "log"
    if name.endswith(".png"):
        return "plot"
    if name == "config.resolved.json":
        return "config"
    if name == "train_log.jsonl":
        return "training_log"
    if within("data", "raw") or within("data", "clean") or name.endswith((".jsonl.zst", ".parquet", ".jsonl")):
        return "shard"
    if within("data", "stats"):
        return "statistics"
    if within("data", "blend"):
        return "blend"
    if within("data", "tokenized") or name.endswith((".bin", ".idx")):
        return "indexed_dataset"
    if within("tokenizer"):
        return "tokenizer"
    if within("checkpoints"):
        return "checkpoint"
    if within("hf"):
        return "hf_export"
    if within("eval"):
        return "eval_report"
    if name.endswith((".gguf", "-int8.pt")):
        return "quantized_model"
    if within("reports") or within("quantized"):
        return "report"
    return "other"
