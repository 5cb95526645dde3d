"""Where every artifact of a run lives: the one definition of the output layout.

The Snakefile, the tests and the provenance tools all ask this class, so a path is spelled once.
Methods take a language key or a Snakemake wildcard pattern such as ``"{lang}"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from euroflow import config as run_config
from euroflow.errors import EuroflowError


DEMO_SHARD = "ntrex"
SPLITS = ("train", "valid")


class RunPaths:
    def __init__(self, config: dict):
        self.config = config
        self.root = Path(config["paths"]["results"]) / config["run"]["name"]
        self._shards: dict[str, dict[str, str]] | None = None

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

    # data: per shard (wildcards {lang} and {shard}), then per language, then the run's blend
    def shards(self, lang: str) -> dict[str, str]:
        """``{shard id: path}`` of one language's crawl shards (the demo: one NTREX shard, id ``ntrex``)."""
        if self._shards is None:
            self._shards = self._list_shards()
        if lang not in self._shards:
            raise EuroflowError(f"data.source: no shards listed for language {lang}")
        return self._shards[lang]

    def _list_shards(self) -> dict[str, dict[str, str]]:
        from euroflow.data import manifest

        source = self.config["data"]["source"]
        langs = self.config["languages"]
        if source["kind"] == "ntrex-demo":
            return {lang: {DEMO_SHARD: self.raw_shard(lang)} for lang in langs}
        if source.get("manifest"):
            listed = manifest.read_manifest(source["manifest"], source.get("shards"))
            where = f"data.source.manifest: {source['manifest']}"
        else:
            if not source.get("shards"):
                raise EuroflowError("data.source.shards: not set; kind hplt needs the directory of the shards (or a manifest)")
            if not Path(source["shards"]).is_dir():
                raise EuroflowError(
                    f"data.source.shards: {source['shards']} ({Path(source['shards']).absolute()}) is not a directory on this "
                    "machine; point it at your HPLT copy (--config data='{source: {kind: hplt, shards: DIR}}'), or plan "
                    "without the data: euroflow site check SITE --config CONFIG simulates one shard per language"
                )
            pattern = source.get("pattern", "*.jsonl.zst")
            listed = {lang: manifest.list_language(source["shards"], lang, pattern) for lang in langs}
            where = f"data.source.shards: {source['shards']} (pattern {pattern})"
        missing = [lang for lang in langs if not listed.get(lang)]
        if missing:
            from euroflow.languages import get

            named = ", ".join(f"{lang} ({get(lang).hplt})" for lang in missing[:8]) + (" ..." if len(missing) > 8 else "")
            raise EuroflowError(f"{where}: no shards for {len(missing)} of {len(langs)} languages: {named}")
        return {lang: listed[lang] for lang in langs}

    def check_sources(self) -> None:
        """List every language's shards now: a missing source is one error naming every language without shards."""
        self.shards(self.config["languages"][0])
        self.check_bundle()

    def check_bundle(self) -> None:
        """The bundle files the rules read exist: one line naming the first missing one and how many."""
        missing = [name for name in self.bundle_inputs if not os.path.isfile(name)]
        if missing:
            from euroflow.data.ntrex import _HOW_TO_SET

            root = self.data_root
            where = "" if os.path.isdir(root) else " (no such directory)"
            more = f" and {len(missing) - 1} more of the {len(self.bundle_inputs)} files the run reads" if len(missing) > 1 else ""
            raise EuroflowError(f"paths.data_root {root}{where}: the shared data bundle lacks {missing[0]}{more}; {_HOW_TO_SET}")

    def shard_ids(self, lang: str) -> list[str]:
        return list(self.shards(lang))

    def tokenizer_shards(self, lang: str) -> list[str]:
        """The prepared shards of ``lang`` the tokenizer's training sample is drawn from."""
        ids = self.shard_ids(lang)[: self.config["tokenizer"].get("shards_per_language", 4)]
        return [self.filtered(lang, shard, "jsonl.zst") for shard in ids]

    def raw_input(self, lang: str, shard: str) -> str:
        try:
            return self.shards(lang)[shard]
        except KeyError:
            raise EuroflowError(f"no shard {shard!r} for language {lang}") from None

    @property
    def bundle_manifest(self) -> str:
        """The files the run read from the shared data bundle, with dataset, licence and sha256."""
        return self._p("data", "upstream", "bundle.json")

    # the shared data bundle's files, read where it lies (euroflow.bundle)
    def bundle_ntrex(self, lang: str) -> list[str]:
        from euroflow import bundle

        return bundle.ntrex_files(self.data_root, lang)

    def bundle_flores(self, langs) -> list[str]:
        from euroflow import bundle

        return bundle.flores_files(self.data_root, list(langs))

    def bundle_mc(self, tasks, langs) -> list[str]:
        from euroflow import bundle

        return bundle.mc_files(self.data_root, list(tasks), list(langs))

    def bundle_root(self, wildcards, input) -> str:
        """A rule's ``data_root`` param: the bundle its input files lie in (where a storage plugin
        staged them), the configured bundle when it reads none of them."""
        from euroflow import bundle

        roots = (bundle.root_of(name) for name in input)
        return next((root for root in roots if root), self.data_root)

    @property
    def mc_sets(self) -> list[str]:
        """The multiple-choice sets the run evaluates on: evaluation.multiple_choice and those lm-eval runs."""
        evaluation = self.config["evaluation"]
        lm_eval = evaluation.get("lm_eval", {}).get("sets", [])  # absent only from a config not validated yet
        return list(dict.fromkeys([*evaluation["multiple_choice"], *(s for s in lm_eval if s != "flores")]))

    @property
    def bundle_inputs(self) -> list[str]:
        """Every file of the bundle that a rule of this run reads."""
        cfg, langs = self.config, self.config["languages"]
        files = [f for lang in langs for f in self.bundle_ntrex(lang)] if cfg["data"]["source"]["kind"] == "ntrex-demo" else []
        files += self.bundle_flores(["en", *langs, *cfg["evaluation"]["bpb_languages"]])  # parity is relative to English
        files += self.bundle_mc(self.mc_sets, langs)
        return list(dict.fromkeys(files))

    def raw_shard(self, lang: str) -> str:
        """The demo's NTREX-built shard of one language."""
        return self._p("data", "raw", lang, f"{DEMO_SHARD}.jsonl.zst")

    def filtered(self, lang: str, shard: str, ext: str) -> str:
        """Outputs of preparing one shard: ``jsonl.zst`` (kept documents), ``sig.npz``, ``lengths.npy``, ``report.json``."""
        return self._p("data", "filtered", lang, f"{shard}.{ext}")

    def filtered_dir(self, lang: str) -> str:
        return self._p("data", "filtered", lang)

    def filtered_all(self, lang: str, ext: str) -> list[str]:
        """One output of every prepared shard of ``lang``, in manifest order."""
        return [self.filtered(lang, shard, ext) for shard in self.shard_ids(lang)]

    def contamination_index(self, lang: str) -> str:
        """The word n-grams of the evaluation sets the run uses in ``lang`` (euroflow.data.contamination)."""
        return self._p("data", "decontamination", f"{lang}.npz")

    def contamination_inputs(self, lang: str) -> list[str]:
        """The bundle files whose texts the language's training documents must not contain."""
        return self.bundle_flores([lang]) + self.bundle_mc(self.mc_sets, [lang])

    def dedup_assignment(self, lang: str) -> str:
        return self._p("data", "dedup", f"{lang}.npz")

    def dedup_pairs(self, lang: str, part: int | str) -> str:
        """One band job's duplicate pairs among a language's documents (its bands: :attr:`dedup_parts`)."""
        return self._p("data", "dedup", lang, f"bands{part}.npz")

    @property
    def dedup_parts(self) -> list[list[int]]:
        """The bands of each band job of a language: 0 (exact keys), then 1..b (MinHash LSH) for near
        dedup, dealt into ``data.dedup_band_jobs`` jobs (default: one job per band)."""
        from euroflow.data.minhash import band_ids, band_layout, band_parts
        from euroflow.data.prepare import filter_params

        params = filter_params(self.config["data"])
        near = params["near_dedup"]
        bands, _ = band_layout(near["threshold"], near["num_perm"], tuple(near["lsh_weights"]))
        return band_parts(band_ids(params["dedup"] == "near", bands), self.config["data"].get("dedup_band_jobs"))

    def dedup_pair_files(self, lang: str) -> list[str]:
        return [self.dedup_pairs(lang, part) for part in range(len(self.dedup_parts))]

    def shard_stats(self, lang: str) -> str:
        """One language's statistics: every filter's and deduplication's counts over its shards."""
        return self._p("data", "stats", f"{lang}.json")

    @property
    def blend_dir(self) -> str:
        return self._p("data", "blend")

    @property
    def weights(self) -> str:
        """Language sampling weights (from the statistics; the tokenizer's sample uses them too)."""
        return self._p("data", "blend", "weights.json")

    @property
    def blend(self) -> str:
        """The Megatron blend per split over every tokenized shard, with the language weights."""
        return self._p("data", "blend", "blend.json")

    @property
    def tokenized_dir(self) -> str:
        return self._p("data", "tokenized")

    def tokenized_prefix(self, lang: str, shard: str, split: str) -> str:
        return self._p("data", "tokenized", lang, f"{shard}.{split}")

    def tokenized_report(self, lang: str, shard: str) -> str:
        return self._p("data", "tokenized", lang, f"{shard}.json")

    def tokenized_reports(self) -> dict[str, list[str]]:
        """Every tokenized shard's report, by language (the blend's inputs)."""
        return {lang: [self.tokenized_report(lang, s) for s in self.shard_ids(lang)] for lang in self.config["languages"]}

    def merged_prefix(self, lang: str, split: str) -> str:
        """One language's shards of a split as one indexed dataset: the blend's prefix for it."""
        return self._p("data", "merged", f"{lang}.{split}")

    def merged_report(self, lang: str) -> str:
        return self._p("data", "merged", f"{lang}.json")

    def merged_reports(self) -> dict[str, list[str]]:
        """The blend's inputs: one merged report per language."""
        return {lang: [self.merged_report(lang)] for lang in self.config["languages"]}

    @property
    def merged_datasets(self) -> list[str]:
        """Every merged .bin/.idx of the run (what the blend names)."""
        return [self.merged_prefix(lang, split) + ext for lang in self.config["languages"] for split in SPLITS for ext in (".bin", ".idx")]

    def tokenized_files(self, lang: str) -> list[str]:
        """Every per-shard .bin/.idx of ``lang`` (the merge job's inputs)."""
        return [self.tokenized_prefix(lang, shard, split) + ext
                for shard in self.shard_ids(lang) for split in SPLITS for ext in (".bin", ".idx")]

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
        """Training state, never a rule output (no failure or rerun of the rule removes it)."""
        return self._p("train", "checkpoints")

    @property
    def final_checkpoint(self) -> str:
        """The checkpoint of the last step: pretrain's output, export's input."""
        return self._p("train", "checkpoints", f"iter_{self.config['training']['train_steps']:07d}")

    @property
    def progress_log(self) -> str:
        """The live training log (state: it survives a failed or killed run, and resumes with it)."""
        return self._p("train", "progress.jsonl")

    @property
    def train_log(self) -> str:
        """The finished run's training log (written once the last step is done)."""
        return self._p("train", "train_log.jsonl")

    @property
    def checkpoint_evaluations(self) -> str:
        """Evaluations of intermediate checkpoints made during training (state, like the checkpoints)."""
        return self._p("train", "evaluations")

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
    def imatrix(self) -> str:
        """llama.cpp's importance matrix of the HF export over a language-balanced training sample."""
        return self._p("quantized", f"{self.config['run']['name']}.imatrix.gguf")

    @property
    def int8(self) -> str:
        return self._p("quantized", f"{self.config['run']['name']}-int8.pt")

    def quality(self, ext: str) -> str:
        return self._p("quantized", f"quality.{ext}")

    def gates(self, ext: str) -> str:
        return self._p("quantized", f"gates.{ext}")


def artifact_category(path: str) -> str:
    """What a file or directory is to the pipeline (provenance's artifact category), read from
    where :class:`RunPaths` puts it; files outside the layout are classified by their suffix."""
    parts = Path(path).parts
    name = parts[-1] if parts else ""

    def within(*segments: str) -> bool:
        """The path is the directory ``a/b`` or lies below it, wherever it sits."""
        n = len(segments)
        return any(parts[i : i + n] == segments for i in range(len(parts) - n + 1))

    from euroflow.bundle import dataset_of

    if dataset_of(path) is not None or within("data", "upstream"):
        return "upstream"
    if within("logs") or name.endswith(".log"):
        return "log"
    if name.endswith(".png"):
        return "plot"
    if name == "config.resolved.json":
        return "config"
    if name == "train_log.jsonl":
        return "training_log"
    if within("data", "dedup") or (within("data", "filtered") and name.endswith((".report.json", ".sig.npz", ".lengths.npy"))):
        return "dedup"
    if within("data", "raw") or within("data", "filtered") or name.endswith((".jsonl.zst", ".parquet", ".jsonl")):
        return "shard"
    if within("data", "stats"):
        return "statistics"
    if within("data", "blend"):
        return "blend"
    if within("data", "tokenized") or within("data", "merged") or name.endswith((".bin", ".idx")):
        return "indexed_dataset"
    if within("tokenizer"):
        return "tokenizer"
    if within("checkpoints"):
        return "checkpoint"
    if within("hf"):
        return "hf_export"
    if within("eval"):
        return "eval_report"
    if name.endswith(".imatrix.gguf"):
        return "importance_matrix"
    if name.endswith((".gguf", "-int8.pt")):
        return "quantized_model"
    if within("reports") or within("quantized"):
        return "report"
    return "other"
