"""A training card for a recorded run: what the model is, what it was trained on, with what
compute, how it scores and what came out, from the provenance database and the files it recorded.

It follows the spirit of the EU AI Act's documentation duties for general-purpose AI models
(Annex XI technical documentation; the "public summary of the content used for training"), but it
is a summary of recorded facts, not a legal document. Every value comes from the run's record
(config, jobs, Slurm accounting, artifacts with checksums) or from a file the run recorded, read
back from disk; a value that cannot be established is given as ``"not recorded"``, never left out.
A file the run recorded that is gone from disk is named as missing, and one whose content no longer
matches the recorded checksum is flagged as changed.

Sections (keys of the JSON, headings of the Markdown): model, training_data, sampling, tokenizer,
compute, evaluation, outputs, provenance.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import Engine

from euroflow.atomic import write_text
from euroflow.languages import LANGUAGES
from euroflow.model_size import padded_vocab_size, parameter_count
from euroflow.provenance.hashing import sha256_file
from euroflow.provenance.queries import run_detail

NOT_RECORDED = "not recorded"
CARD_FORMAT = "euroflow-training-card/1"
NO_SLURM = "no Slurm accounting: CPU-only/local run"
NO_ENERGY = "not reported by Slurm"
LOCAL_SITE = "local"

ARCHITECTURE = (
    "decoder-only transformer, Llama-style (Megatron-Core GPTModel): pre-RMSNorm, SwiGLU MLP, "
    "rotary position embeddings, grouped-query attention, no bias terms"
)

# Where the training text comes from, keyed by the run config's data.source.kind.
# ntrex-demo: /work/shared/data/multilingual/SOURCES.md (the data bundle's own record).
# hplt: the HPLT v2 release statement (hplt-project.org/datasets/v2.0): the packaging, metadata and
# annotations are CC0; HPLT does not own the crawled text.
KNOWN_SOURCES: dict[str, dict[str, str]] = {
    "ntrex-demo": {
        "name": "NTREX-128 (News Test References for MT Evaluation of 128 Languages)",
        "description": (
            "WMT19 newstest2019 English news (123 documents, 1997 sentences) professionally translated "
            "into 128 languages; the demo turns each NTREX document into one HPLT v2 style document "
            "(the HPLT-only fields of those shards are synthetic)"
        ),
        "licence": "CC BY-SA 4.0",
        "licence_url": "https://creativecommons.org/licenses/by-sa/4.0/",
        "url": "https://github.com/MicrosoftTranslator/NTREX",
        "version": "MicrosoftTranslator/NTREX @ 8561f6a622db9edad1217683e5c83daefd8bb2bf (NTREX-128/)",
        "citation": (
            "Federmann, Kocmi and Xin 2022, NTREX-128 - News Test References for MT Evaluation of 128 "
            "Languages (SUMEval 2022); Barrault et al. 2019, Findings of the 2019 Conference on Machine "
            "Translation (WMT19)"
        ),
    },
    "hplt": {
        "name": "HPLT v2 (High Performance Language Technologies, cleaned monolingual web text)",
        "description": (
            "web text extracted from Internet Archive and Common Crawl crawls, language-identified and "
            "cleaned by the HPLT project"
        ),
        "licence": (
            "CC0 1.0 for the HPLT packaging, metadata and annotations; licence of the underlying web "
            "content varies (HPLT does not own the crawled text)"
        ),
        "licence_url": "https://creativecommons.org/publicdomain/zero/1.0/",
        "url": "https://hplt-project.org/datasets/v2.0",
        "version": "HPLT v2.0",
        "citation": (
            "Burchell et al. 2025, An Expanded Massive Multilingual Dataset for High-Performance "
            "Language Technologies (HPLT), ACL 2025, arXiv:2503.10267"
        ),
    },
}

SAMPLING_POLICIES = {
    "temperature": "p_l proportional to n_l ** alpha (n_l: characters of language l after cleaning)",
    "unimax": (
        "UniMax (Chung et al. 2023): a character budget split uniformly over languages, smallest first, "
        "each capped at unimax_max_epochs passes over its data"
    ),
    "explicit": "weights given in the config, normalized to sum 1",
}


# --------------------------------------------------------------------------------------------------
# small helpers


def _or_nr(value: Any) -> Any:
    return NOT_RECORDED if value is None else value


def _get(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...`` or "not recorded"."""
    for key in keys:
        if not isinstance(mapping, dict) or mapping.get(key) is None:
            return NOT_RECORDED
        mapping = mapping[key]
    return mapping


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _hours(seconds: float) -> float:
    return seconds / 3600.0


class _Record:
    """The artifacts a run touched, indexed by path and category, with their producing jobs."""

    def __init__(self, detail: dict[str, Any]):
        self.workdir = detail.get("workdir")
        latest: dict[str, tuple[tuple, dict]] = {}
        self.producer: dict[int, dict] = {}
        for job in detail["jobs"]:
            started = job["started_at"] or ""
            ended = job["ended_at"] or started
            for edge in job["used"]:
                self._offer(latest, edge, (started, edge["artifact_id"]))
            if job["status"] != "success":
                continue
            for edge in job["generated"]:
                if edge["role"] == "output":
                    self.producer[edge["artifact_id"]] = job
                self._offer(latest, edge, (ended, edge["artifact_id"]))
        # one artifact per path: the content this run saw last
        self.by_path = {path: artifact for path, (_, artifact) in latest.items()}

    @staticmethod
    def _offer(latest: dict, edge: dict, key: tuple) -> None:
        artifact = {k: v for k, v in edge.items() if k != "role"}
        artifact["category"] = edge["category"]
        current = latest.get(edge["path"])
        if current is None or key >= current[0]:
            latest[edge["path"]] = (key, artifact)

    def of(self, category: str, name: str | None = None) -> list[dict]:
        found = [a for a in self.by_path.values() if a["category"] == category]
        if name is not None:
            found = [a for a in found if os.path.basename(a["path"]) == name]
        return sorted(found, key=lambda a: a["path"])

    def one(self, category: str, name: str | None = None) -> dict | None:
        found = self.of(category, name)
        return found[-1] if found else None

    def rel(self, path: str) -> str:
        if self.workdir and os.path.isabs(path):
            try:
                if os.path.commonpath([path, self.workdir]) == os.path.normpath(self.workdir):
                    return os.path.relpath(path, self.workdir)
            except ValueError:
                pass
        return path

    def absolute(self, path: str) -> str:
        return path if os.path.isabs(path) or not self.workdir else os.path.join(self.workdir, path)

    def file_entry(self, artifact: dict) -> dict[str, Any]:
        """Path, checksum and size as recorded, and whether the path still exists."""
        return {
            "path": self.rel(artifact["path"]),
            "kind": artifact["kind"],
            "sha256": _or_nr(artifact["sha256"]),
            "size": _or_nr(artifact["size"]),
            "on_disk": "present" if os.path.exists(artifact["path"]) else "missing",
        }

    def read_json(self, artifact: dict | None, what: str, notes: list[str], *, jsonl: bool = False) -> tuple[Any, dict | str]:
        """The parsed content of a recorded JSON (or JSON Lines) file and its state; notes say why
        a file could not be used or no longer matches its recorded checksum."""
        if artifact is None:
            notes.append(f"{what}: not recorded for this run")
            return None, NOT_RECORDED
        entry = self.file_entry(artifact)
        path = artifact["path"]
        if entry["on_disk"] == "missing":
            notes.append(f"{what}: {entry['path']} is missing on disk (recorded sha256 {entry['sha256']})")
            return None, entry
        try:
            current = sha256_file(path)
            text = Path(path).read_text(encoding="utf-8")
            data = [json.loads(line) for line in text.splitlines() if line.strip()] if jsonl else json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            entry["on_disk"] = "unreadable"
            notes.append(f"{what}: {entry['path']} cannot be read: {' '.join(str(exc).split())}")
            return None, entry
        if artifact["sha256"] is not None and current != artifact["sha256"]:
            entry["on_disk"] = "changed"
            notes.append(
                f"{what}: {entry['path']} has changed since the run (sha256 {current}, recorded "
                f"{artifact['sha256']}); its values are shown but may not describe this run"
            )
        else:
            entry["on_disk"] = "unchanged"
        return data, entry


# --------------------------------------------------------------------------------------------------
# model


def _model_section(config: dict | None, record: _Record) -> dict[str, Any]:
    config = config or {}
    run, model, training = config.get("run") or {}, config.get("model") or {}, config.get("training") or {}
    vocab = _get(config, "tokenizer", "vocab_size")
    tp = training.get("tensor_model_parallel_size") or 1
    shape_keys = (
        "num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "ffn_hidden_size", "seq_length",
        "tie_embeddings", "rotary_base", "norm_epsilon",
    )
    shape = {key: _get(model, key) for key in shape_keys}
    if shape["num_query_groups"] == NOT_RECORDED and _num(model.get("num_attention_heads")):
        shape["num_query_groups"] = model["num_attention_heads"]  # the schema's default: no GQA
    if _num(model.get("hidden_size")) and _num(model.get("num_attention_heads")):
        shape["head_dim"] = model["hidden_size"] // model["num_attention_heads"]
    else:
        shape["head_dim"] = NOT_RECORDED
    shape["vocab_size"] = vocab
    shape["padded_vocab_size"] = padded_vocab_size(vocab, tp) if _num(vocab) else NOT_RECORDED

    needed = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads")
    if _num(vocab) and all(_num(model.get(k)) for k in needed):
        parameters: Any = parameter_count(model, vocab, tp)
    else:
        parameters = NOT_RECORDED

    steps, batch, seq = training.get("train_steps"), training.get("global_batch_size"), model.get("seq_length")
    train = {
        "train_steps": _or_nr(steps),
        "global_batch_size": _or_nr(batch),
        "micro_batch_size": _get(training, "micro_batch_size"),
        "seq_length": _or_nr(seq),
        "tokens_seen": steps * batch * seq if all(_num(v) for v in (steps, batch, seq)) else NOT_RECORDED,
        "precision": _get(training, "precision"),
        "lr": _get(training, "lr"),
        "min_lr": _get(training, "min_lr"),
        "lr_decay_style": _get(training, "lr_decay_style"),
        "warmup_steps": _get(training, "warmup_steps"),
        "weight_decay": _get(training, "weight_decay"),
        "tensor_model_parallel_size": _get(training, "tensor_model_parallel_size"),
        "pipeline_model_parallel_size": _get(training, "pipeline_model_parallel_size"),
        "seed": _get(run, "seed"),
    }

    notes: list[str] = []
    rows, log_file = record.read_json(record.one("training_log"), "training log", notes, jsonl=True)
    log: Any = NOT_RECORDED
    if rows:
        steps_logged = [r for r in rows if isinstance(r, dict) and "step" in r]
        valid = [r for r in steps_logged if r.get("valid_loss") is not None]
        last = steps_logged[-1] if steps_logged else {}
        log = {
            "file": log_file,
            "last_step": _get(last, "step"),
            "last_loss": _get(last, "loss"),
            "last_valid_loss": valid[-1]["valid_loss"] if valid else NOT_RECORDED,
            "last_valid_step": valid[-1]["step"] if valid else NOT_RECORDED,
        }
    elif log_file != NOT_RECORDED:
        log = {"file": log_file, "last_step": NOT_RECORDED, "last_loss": NOT_RECORDED,
               "last_valid_loss": NOT_RECORDED, "last_valid_step": NOT_RECORDED}
    if not config:
        notes.append("the run recorded no config: architecture and training settings are unknown")
    return {
        "name": _get(run, "name"),
        "description": _get(run, "description"),
        "architecture": ARCHITECTURE if model else NOT_RECORDED,
        "shape": shape,
        "parameters": parameters,
        "training": train,
        "training_log": log,
        "notes": notes,
    }


# --------------------------------------------------------------------------------------------------
# training data and sampling


def _source(config: dict | None) -> dict[str, Any]:
    source = (config or {}).get("data", {}).get("source") or {}
    kind = source.get("kind")
    known = KNOWN_SOURCES.get(kind) if kind else None
    out: dict[str, Any] = {"kind": _or_nr(kind)}
    if known is None:
        out.update(name="unknown", licence="unknown", licence_url="unknown", url="unknown", version="unknown",
                   citation="unknown", description="unknown")
    else:
        out.update(known)
    if source.get("shards"):
        out["shards"] = source["shards"]
    return out


def _language_name(lang: str) -> str:
    language = LANGUAGES.get(lang)
    return language.name if language else lang


def _bytes_per_token(vocab_size: Any) -> int | None:
    if not _num(vocab_size):
        return None
    import numpy as np

    from euroflow.data.tokenize import token_dtype

    return np.dtype(token_dtype(int(vocab_size))).itemsize


def _language_order(config: dict | None, *found: Iterable[str]) -> list[str]:
    configured = (config or {}).get("languages")
    order = list(configured) if isinstance(configured, list) else []
    extra = sorted({lang for group in found for lang in group} - set(order))
    return order + extra


def _decontamination(languages: list[dict]) -> list[str]:
    """One line: documents sharing an n-gram with each evaluation set, per language (zero is an answer)."""
    found = [(lang["lang"], lang["contamination"]) for lang in languages if isinstance(lang.get("contamination"), dict)]
    if not found:
        return [f"Decontamination: {NOT_RECORDED}", ""]
    checked = [(lang, c) for lang, c in found if c.get("checked")]
    if not checked:
        return ["Decontamination: off (data.decontamination.action)", ""]
    ngram = checked[0][1].get("ngram")
    verb = "removed" if checked[0][1].get("action") == "remove" else "kept and flagged"
    totals: dict[str, int] = {}
    where: dict[str, list[str]] = {}
    for lang, c in checked:
        for name, n in (c.get("by_set") or {}).items():
            totals[name] = totals.get(name, 0) + int(n)
            if n:
                where.setdefault(name, []).append(f"{int(n):,} in {lang}")
    parts = [f"{name}: {total:,} documents" + (f" {verb} ({', '.join(where[name])})" if total else "")
             for name, total in totals.items()]
    unchecked = [lang for lang, c in found if not c.get("checked")]
    line = (f"Decontamination ({ngram}-word n-grams shared with the evaluation sets the run uses, in "
            f"{len(checked)} languages): " + ("; ".join(parts) if parts else "no evaluation set recorded"))
    return [line + (f"; not checked in {', '.join(unchecked)}" if unchecked else ""), ""]


def _raw_shards(record: _Record, stats_artifact: dict | None, stats: dict | None) -> list[dict] | str:
    """The shards the cleaning job read: its recorded inputs, else the inputs its statistics name."""
    if stats_artifact is not None:
        job = record.producer.get(stats_artifact["artifact_id"])
        if job is not None:
            inputs = [
                e for e in job["used"]
                if e["role"] == "input" and e["category"] == "shard"
            ]
            if inputs:
                return [record.file_entry(record.by_path.get(e["path"], e)) for e in sorted(inputs, key=lambda e: e["path"])]
    if isinstance(stats, dict) and isinstance(stats.get("inputs"), list):
        shards = []
        for path in stats["inputs"]:
            absolute = os.path.normpath(record.absolute(str(path)))
            artifact = record.by_path.get(absolute)
            if artifact is not None:
                shards.append(record.file_entry(artifact))
            else:
                shards.append({
                    "path": record.rel(absolute), "kind": NOT_RECORDED, "sha256": NOT_RECORDED, "size": NOT_RECORDED,
                    "on_disk": "present" if os.path.exists(absolute) else "missing",
                })
        return shards
    return NOT_RECORDED


def _data_sections(config: dict | None, record: _Record, tokens_seen: Any) -> tuple[dict, dict]:
    notes: list[str] = []
    stats_by_lang: dict[str, tuple[dict, Any, Any]] = {}
    for artifact in record.of("statistics"):
        lang_from_path = Path(artifact["path"]).name.removesuffix(".json")
        stats, state = record.read_json(artifact, f"cleaning statistics ({lang_from_path})", notes)
        lang = stats.get("lang", lang_from_path) if isinstance(stats, dict) else lang_from_path
        stats_by_lang[lang] = (artifact, stats if isinstance(stats, dict) else None, state)

    blend_artifact = record.one("blend", "blend.json")
    blend, blend_state = record.read_json(blend_artifact, "blend", notes)
    blend = blend if isinstance(blend, dict) else None
    blend_langs = {entry["lang"]: entry for entry in (blend or {}).get("languages", []) if isinstance(entry, dict) and "lang" in entry}

    vocab = _get(config, "tokenizer", "vocab_size")
    per_token = _bytes_per_token(vocab)
    bins: dict[str, list[dict]] = {}  # <results>/<run>/data/tokenized/<lang>/<shard>.<split>.bin: sizes give tokens
    for a in record.of("indexed_dataset"):
        path = Path(a["path"])
        if path.name.endswith(".bin") and path.parent.parent.name == "tokenized":
            bins.setdefault(path.parent.name, []).append(a)

    languages = []
    totals = {"raw_documents": 0, "raw_bytes": 0, "documents": 0, "bytes": 0, "tokens": 0}
    complete = {key: True for key in totals}
    for lang in _language_order(config, stats_by_lang, blend_langs, bins):
        stats_artifact, stats, stats_state = stats_by_lang.get(lang, (None, None, NOT_RECORDED))
        if stats_artifact is None:
            notes.append(f"cleaning statistics ({lang}): not recorded for this run")
        s = stats or {}
        b = blend_langs.get(lang, {})
        entry: dict[str, Any] = {
            "lang": lang,
            "name": _language_name(lang),
            "raw_shards": _raw_shards(record, stats_artifact, stats),
            "raw_documents": _get(s, "docs_in"),
            "raw_bytes": _get(s, "bytes_in"),
            "documents": _get(s, "docs_out"),
            "bytes": _get(s, "bytes_out"),
            "chars": _get(s, "chars_out"),
            "removed": _get(s, "removed"),
            "removed_by_hplt_filter_value": _get(s, "removed_by_hplt_filter_value"),
            "contamination": _get(s, "contamination"),
            "statistics_file": stats_state,
        }
        bin_artifacts = bins.get(lang, [])
        if bin_artifacts and all(_num(a["size"]) for a in bin_artifacts) and per_token:
            size = sum(a["size"] for a in bin_artifacts)
            entry["tokens"] = size // per_token
            entry["tokens_source"] = (
                f"recorded sizes of the {len(bin_artifacts)} train/valid datasets under "
                f"{record.rel(str(Path(bin_artifacts[0]['path']).parent))} ({size} bytes) / {per_token} bytes per token"
            )
        else:
            entry["tokens"] = NOT_RECORDED
            entry["tokens_source"] = NOT_RECORDED
        entry["weight"] = _get(b, "weight")
        entry["natural_share"] = _get(b, "natural_share")
        entry["expected_epochs"] = _get(b, "expected_epochs")
        if _num(entry["weight"]) and _num(tokens_seen):
            entry["expected_training_tokens"] = round(entry["weight"] * tokens_seen)
            entry["epochs_by_tokens"] = (
                entry["weight"] * tokens_seen / entry["tokens"] if _num(entry["tokens"]) and entry["tokens"] else NOT_RECORDED
            )
        else:
            entry["expected_training_tokens"] = NOT_RECORDED
            entry["epochs_by_tokens"] = NOT_RECORDED
        for key in totals:
            if _num(entry[key]):
                totals[key] += entry[key]
            else:
                complete[key] = False
        languages.append(entry)

    if not languages:
        totals_out: dict[str, Any] = {key: NOT_RECORDED for key in totals}
    else:
        totals_out = {key: (value if complete[key] else NOT_RECORDED) for key, value in totals.items()}
    data = {
        "source": _source(config),
        "filters": {
            key: _get(config, "data", key)
            for key in (
                "min_chars", "max_chars", "keep_filter_values", "min_doc_score", "min_lang_agreement",
                "strip_control_chars", "max_bad_fraction", "dedup", "near_dedup", "valid_fraction",
            )
        },
        "languages": languages,
        "totals": totals_out,
        # languages a split has no tokens of (the blend's own check): visible before the tables
        "warnings": [w for w in (blend or {}).get("warnings") or [] if isinstance(w, str)],
        "notes": notes,
    }

    sampling_cfg = (config or {}).get("sampling") or {}
    policy = sampling_cfg.get("policy") or (blend or {}).get("policy")
    sampling = {
        "policy": _or_nr(policy),
        "description": SAMPLING_POLICIES.get(policy, NOT_RECORDED) if policy else NOT_RECORDED,
        "config": sampling_cfg or NOT_RECORDED,
        "blend_params": _get(blend, "params") if blend else NOT_RECORDED,
        "blend_file": blend_state,
        "weights": {entry["lang"]: entry["weight"] for entry in languages} if languages else NOT_RECORDED,
        "natural_shares": {entry["lang"]: entry["natural_share"] for entry in languages} if languages else NOT_RECORDED,
        "notes": [n for n in notes if n.startswith("blend")],
    }
    return data, sampling


# --------------------------------------------------------------------------------------------------
# tokenizer


def _extreme(values: dict[str, float], pick) -> dict[str, Any] | str:
    if not values:
        return NOT_RECORDED
    lang = pick(values, key=values.get)
    return {"lang": lang, "parity": values[lang]}


def _tokenizer_section(config: dict | None, record: _Record) -> dict[str, Any]:
    notes: list[str] = []
    tok_cfg = (config or {}).get("tokenizer") or {}
    artifact = record.one("tokenizer", "tokenizer") or record.one("tokenizer")
    if artifact is None:
        notes.append("tokenizer: no tokenizer artifact recorded for this run")
    parity_doc, parity_state = record.read_json(record.one("report", "tokenizer_parity.json"), "tokenizer parity report", notes)
    parity: Any = NOT_RECORDED
    if isinstance(parity_doc, dict):
        langs = {
            lang: row for lang, row in (parity_doc.get("languages") or {}).items()
            if isinstance(row, dict) and _num(row.get("parity"))
        }
        values = {lang: row["parity"] for lang, row in langs.items()}
        parity = {
            "file": parity_state,
            "data": _get(parity_doc, "data"),
            "splits": _get(parity_doc, "splits"),
            "reference": _get(parity_doc, "reference"),
            "mean_parity": sum(values.values()) / len(values) if values else NOT_RECORDED,
            "max_parity": _extreme(values, max),
            "min_parity": _extreme(values, min),
            "languages": {
                lang: {
                    "parity": row["parity"],
                    "tokens_per_word": _get(row, "tokens_per_word"),
                    "chars_per_token": _get(row, "chars_per_token"),
                    "byte_fallback_share": _get(row, "byte_fallback_share"),
                }
                for lang, row in langs.items()
            },
            "notes": parity_doc.get("notes") or [],
        }
    elif parity_state != NOT_RECORDED:
        parity = {"file": parity_state}
    return {
        "type": _get(tok_cfg, "type"),
        "vocab_size": _get(tok_cfg, "vocab_size"),
        "character_coverage": _get(tok_cfg, "character_coverage"),
        "sample_chars": _get(tok_cfg, "sample_chars"),
        "artifact": record.file_entry(artifact) if artifact else NOT_RECORDED,
        "parity": parity,
        "notes": notes,
    }


# --------------------------------------------------------------------------------------------------
# compute


def _compute_section(detail: dict[str, Any]) -> dict[str, Any]:
    site = detail.get("site") or LOCAL_SITE
    jobs = detail["jobs"]
    wall_s = core_s = 0.0
    unfinished = no_threads = 0
    slurm: list[dict] = []
    by_rule: dict[str, dict[str, Any]] = {}
    for job in jobs:
        rule = by_rule.setdefault(job["rule"], {"rule": job["rule"], "attempts": 0, "wall_s": 0.0, "gpu_s": 0.0, "slurm": 0})
        rule["attempts"] += 1
        start, end = _parse_time(job["started_at"]), _parse_time(job["ended_at"])
        if start is None or end is None:
            unfinished += 1
        else:
            seconds = max((end - start).total_seconds(), 0.0)
            wall_s += seconds
            rule["wall_s"] += seconds
            if job.get("threads"):
                core_s += seconds * job["threads"]
            else:
                no_threads += 1
        for record in job["slurm"]:
            slurm.append(record)
            rule["slurm"] += 1
            if _num(record.get("elapsed_s")) and _num(record.get("gpus")):
                rule["gpu_s"] += record["elapsed_s"] * record["gpus"]

    notes: list[str] = []
    if unfinished:
        notes.append(f"{unfinished} job attempt(s) have no end time and are not counted in wall-hours")
    entry: dict[str, Any] = {
        "site": site,
        "jobs": len({j["snakemake_jobid"] for j in jobs}),
        "job_attempts": len(jobs),
        "failed_attempts": sum(1 for j in jobs if j["status"] == "failed"),
        "wall_hours": _hours(wall_s),
    }
    if not slurm:
        entry.update(
            accounting=NO_SLURM,
            slurm_allocations=0,
            cpu_wall_hours=_hours(wall_s),
            cpu_core_hours=_hours(core_s) if jobs and not no_threads else NOT_RECORDED,
            gpu_hours=NOT_RECORDED,
            node_hours=NOT_RECORDED,
            energy_kwh=NOT_RECORDED,
            energy=NO_ENERGY,
        )
        if jobs and no_threads:
            notes.append(f"{no_threads} job attempt(s) recorded no thread count: CPU core-hours not derivable")
    else:
        with_gpus = [s for s in slurm if _num(s.get("elapsed_s")) and _num(s.get("gpus"))]
        with_nodes = [s for s in slurm if _num(s.get("elapsed_s")) and _num(s.get("num_nodes"))]
        with_energy = [s for s in slurm if _num(s.get("energy_j"))]
        gpu_hours = sum(s["elapsed_s"] * s["gpus"] for s in with_gpus) / 3600.0
        entry.update(
            accounting=f"Slurm accounting for {len(slurm)} allocation(s)",
            slurm_allocations=len(slurm),
            slurm_elapsed_hours=sum(s["elapsed_s"] for s in slurm if _num(s.get("elapsed_s"))) / 3600.0,
            gpu_hours=gpu_hours if with_gpus else NOT_RECORDED,
            node_hours=sum(s["elapsed_s"] * s["num_nodes"] for s in with_nodes) / 3600.0 if with_nodes else NOT_RECORDED,
            partitions=sorted({s["partition"] for s in slurm if s.get("partition")}) or NOT_RECORDED,
            energy_kwh=sum(s["energy_j"] for s in with_energy) / 3.6e6 if with_energy else NOT_RECORDED,
            energy="reported by Slurm" if len(with_energy) == len(slurm) else (
                NO_ENERGY if not with_energy
                else f"reported by Slurm for {len(with_energy)} of {len(slurm)} allocations (the total covers those only)"
            ),
            max_rss_bytes=max((s["max_rss_bytes"] for s in slurm if _num(s.get("max_rss_bytes"))), default=NOT_RECORDED),
        )
        if len(with_gpus) < len(slurm):
            notes.append(
                f"{len(slurm) - len(with_gpus)} of {len(slurm)} Slurm allocation(s) lack elapsed time or GPU count: "
                "not counted in GPU-hours"
            )
    rules = [
        {
            "rule": r["rule"],
            "attempts": r["attempts"],
            "wall_hours": _hours(r["wall_s"]),
            "gpu_hours": _hours(r["gpu_s"]) if r["slurm"] else NOT_RECORDED,
        }
        for r in sorted(by_rule.values(), key=lambda r: (-r["wall_s"], r["rule"]))
    ]
    return {"sites": [entry], "by_rule": rules, "notes": notes}


# --------------------------------------------------------------------------------------------------
# evaluation and outputs


def _evaluation_section(record: _Record) -> dict[str, Any]:
    notes: list[str] = []
    report, state = record.read_json(record.one("eval_report", "report.json"), "evaluation report", notes)
    report = report if isinstance(report, dict) else {}
    bpb: Any = NOT_RECORDED
    if isinstance(report.get("bpb"), dict):
        b = report["bpb"]
        bpb = {
            "split": _get(b, "split"),
            "baseline_bpb": _get(b, "baseline_bpb"),
            "macro_mean_bpb": _get(b, "macro_mean_bpb"),
            "micro_bpb": _get(b, "micro_bpb"),
            "languages": {
                lang: {
                    "bpb": _get(row, "bpb"),
                    "sentences": _get(row, "sentences"),
                    "bytes": _get(row, "bytes"),
                    "derived_from": row.get("derived_from"),
                }
                for lang, row in (b.get("languages") or {}).items() if isinstance(row, dict)
            },
        }
    mc: Any = NOT_RECORDED
    if isinstance(report.get("mc"), dict):
        m = report["mc"]
        mc = {
            "max_items": _get(m, "max_items"),
            "tasks": {
                task: {
                    lang: {key: _get(row, key) for key in ("n", "acc", "acc_norm", "chance")}
                    for lang, row in langs.items() if isinstance(row, dict)
                }
                for task, langs in (m.get("tasks") or {}).items() if isinstance(langs, dict)
            },
        }
    return {"report": state, "bpb": bpb, "multiple_choice": mc, "sets": _evaluation_sets(record, notes), "notes": notes}


def _evaluation_sets(record: _Record, notes: list[str]) -> Any:
    """The evaluation-only datasets the run read, from the data bundle manifest: licence, files, bytes."""
    manifest, _ = record.read_json(record.one("upstream", "bundle.json"), "data bundle manifest", notes)
    if not isinstance(manifest, dict):
        return NOT_RECORDED
    sets: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("files") or []:
        if isinstance(entry, dict) and entry.get("evaluation_only"):
            row = sets.setdefault(str(entry.get("dataset")), {"licence": entry.get("licence"), "files": 0, "bytes": 0})
            row["files"] += 1
            row["bytes"] += int(entry.get("bytes") or 0)
    return sets or NOT_RECORDED


def _outputs_section(record: _Record) -> dict[str, Any]:
    notes: list[str] = []
    out: dict[str, Any] = {}
    for category in ("checkpoint", "hf_export", "importance_matrix", "quantized_model"):
        found = record.of(category)
        if category == "hf_export":  # the export directory, not files recorded inside it
            found = [a for a in found if os.path.basename(a["path"]) == "hf"] or found
        out[category] = [record.file_entry(a) for a in found] or NOT_RECORDED
        for entry in out[category] if isinstance(out[category], list) else []:
            if entry["on_disk"] == "missing":
                notes.append(f"{category}: {entry['path']} is missing on disk")
    quality, _ = record.read_json(record.one("report", "quality.json"), "quantization quality report", [])
    if isinstance(quality, dict) and isinstance(out["quantized_model"], list):
        variants = {
            os.path.normpath(record.absolute(v["path"])): v
            for v in quality.get("variants") or [] if isinstance(v, dict) and v.get("path")
        }
        for entry in out["quantized_model"]:
            v = variants.get(os.path.normpath(record.absolute(entry["path"])))
            entry["mean_bpb"] = _get(v, "mean_bpb") if v else NOT_RECORDED
            entry["mean_delta_vs_reference_bpb"] = _get(v, "mean_delta_vs_fp32") if v else NOT_RECORDED
    elif isinstance(out["quantized_model"], list):
        for entry in out["quantized_model"]:
            entry["mean_bpb"] = entry["mean_delta_vs_reference_bpb"] = NOT_RECORDED
    out["notes"] = notes
    return out


def _provenance_section(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": detail["id"],
        "status": _or_nr(detail.get("status")),
        "started_at": _or_nr(detail.get("started_at")),
        "ended_at": _or_nr(detail.get("ended_at")),
        "git_commit": _or_nr(detail.get("git_commit")),
        "git_dirty": _or_nr(detail.get("git_dirty")),
        "git_diff_sha256": (
            _or_nr(detail.get("git_diff_sha256")) if detail.get("git_dirty") is not False else "clean tree: no diff"
        ),
        "config_hash": _or_nr(detail.get("config_hash")),
        "config_path": _or_nr(detail.get("config_path")),
        "snakemake_version": _or_nr(detail.get("snakemake_version")),
        "command": _or_nr(detail.get("command")),
        "host": _or_nr(detail.get("host")),
        "site": detail.get("site") or LOCAL_SITE,
        "workdir": _or_nr(detail.get("workdir")),
        "packages": {name: _or_nr(version) for name, version in (detail.get("packages") or {}).items()} or NOT_RECORDED,
    }


# --------------------------------------------------------------------------------------------------
# public API


def training_card(engine: Engine, run_id: str) -> dict[str, Any]:
    """The training card of the run ``run_id`` (or an unambiguous prefix) as a JSON-ready dict.

    Raises EuroflowError when no run (or more than one) matches."""
    detail = run_detail(engine, run_id)
    config = None
    if detail.get("config_json"):
        try:
            config = json.loads(detail["config_json"])
        except json.JSONDecodeError:
            config = None
    record = _Record(detail)
    model = _model_section(config, record)
    data, sampling = _data_sections(config, record, model["training"]["tokens_seen"])
    name = model["name"]
    return {
        "card": {
            "format": CARD_FORMAT,
            "title": f"Training summary: {name if name != NOT_RECORDED else detail['id']}",
            "run_id": detail["id"],
            "scope": (
                "summary of the recorded facts of one euroflow run (model, training content per language, "
                "compute, evaluation, outputs), in the spirit of the EU AI Act documentation duties for "
                "general-purpose AI models (Annex XI; public summary of training content); not legal advice"
            ),
        },
        "model": model,
        "training_data": data,
        "sampling": sampling,
        "tokenizer": _tokenizer_section(config, record),
        "compute": _compute_section(detail),
        "evaluation": _evaluation_section(record),
        "outputs": _outputs_section(record),
        "provenance": _provenance_section(detail),
    }


def write_card(engine: Engine, run_id: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``card.md`` and ``card.json`` for the run into ``out_dir`` (each atomically) and return
    their paths. Nothing is written when the run is unknown."""
    card = training_card(engine, run_id)
    markdown = card_markdown(card)
    out_dir = Path(out_dir)
    md_path, json_path = out_dir / "card.md", out_dir / "card.json"
    write_text(json_path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    write_text(md_path, markdown)
    return md_path, json_path


# --------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) if value else "-"
    return str(value)


def _cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], right: Iterable[int] = ()) -> list[str]:
    right = set(right)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _kv(pairs: list[tuple[str, Any]]) -> list[str]:
    return _table(["item", "value"], [[k, v] for k, v in pairs])


def _short(sha: Any) -> str:
    return sha[:16] if isinstance(sha, str) and sha != NOT_RECORDED and len(sha) == 64 else _fmt(sha)


def _file(entry: Any) -> str:
    if not isinstance(entry, dict):
        return _fmt(entry)
    return f"`{entry['path']}` (sha256 {_short(entry['sha256'])}, on disk: {entry['on_disk']})"


def _notes(notes: list[str]) -> list[str]:
    return [f"- {n}" for n in notes] + ([""] if notes else [])


def _lang_value(value: Any) -> str:
    return f"{value['lang']} ({_fmt(value['parity'])})" if isinstance(value, dict) else _fmt(value)


def _percent(value: Any) -> str:
    return f"{value * 100:.2f}%" if _num(value) else _fmt(value)


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown: one headed section per key, tables for the per-language facts."""
    m, d, s, t = card["model"], card["training_data"], card["sampling"], card["tokenizer"]
    c, e, o, p = card["compute"], card["evaluation"], card["outputs"], card["provenance"]
    out = [f"# {card['card']['title']}", "", f"Run `{card['card']['run_id']}`: a {card['card']['scope']}.", ""]
    out += [f"Values shown as \"{NOT_RECORDED}\" could not be established from the run's record.", ""]

    out += ["## 1. Model", ""]
    shape = m["shape"]
    out += _kv([
        ("name", m["name"]), ("description", m["description"]), ("architecture", m["architecture"]),
        ("layers", shape["num_layers"]), ("hidden size", shape["hidden_size"]),
        ("attention heads", shape["num_attention_heads"]), ("query groups (KV heads)", shape["num_query_groups"]),
        ("head dimension", shape["head_dim"]), ("FFN hidden size", shape["ffn_hidden_size"]),
        ("sequence length", shape["seq_length"]), ("vocabulary (tokenizer)", shape["vocab_size"]),
        ("vocabulary (padded embedding rows)", shape["padded_vocab_size"]),
        ("tied embeddings", shape["tie_embeddings"]), ("RoPE base", shape["rotary_base"]),
    ])
    if isinstance(m["parameters"], dict):
        out += ["Parameters (computed from the shape):", ""]
        out += _table(["part", "parameters"], [[k.replace("_", " "), v] for k, v in m["parameters"].items()], right=[1])
    else:
        out += [f"Parameters: {NOT_RECORDED}", ""]
    tr = m["training"]
    out += ["Training:", ""]
    out += _kv([
        ("steps", tr["train_steps"]), ("global batch (sequences)", tr["global_batch_size"]),
        ("micro batch", tr["micro_batch_size"]), ("sequence length", tr["seq_length"]),
        ("tokens seen (steps x global batch x sequence length)", tr["tokens_seen"]),
        ("precision", tr["precision"]), ("learning rate", f"{_fmt(tr['lr'])} -> {_fmt(tr['min_lr'])} ({_fmt(tr['lr_decay_style'])}, "
                                         f"{_fmt(tr['warmup_steps'])} warmup steps)"),
        ("weight decay", tr["weight_decay"]),
        ("tensor / pipeline parallel", f"{_fmt(tr['tensor_model_parallel_size'])} / {_fmt(tr['pipeline_model_parallel_size'])}"),
        ("seed", str(tr["seed"])),
    ])
    log = m["training_log"]
    if isinstance(log, dict):
        out += _kv([
            ("training log", _file(log["file"])), ("last logged step", log["last_step"]), ("last loss", log["last_loss"]),
            ("last validation loss", f"{_fmt(log['last_valid_loss'])} (step {_fmt(log['last_valid_step'])})"),
        ])
    else:
        out += [f"Training log: {NOT_RECORDED}", ""]
    out += _notes(m["notes"])

    out += ["## 2. Training data", ""]
    out += [f"- **Warning:** {w}" for w in d.get("warnings") or []] + ([""] if d.get("warnings") else [])
    src = d["source"]
    out += _kv([
        ("source", src["name"]), ("source kind (config)", src["kind"]), ("description", src["description"]),
        ("licence", src["licence"]), ("licence URL", src["licence_url"]), ("where", src["url"]),
        ("version", src["version"]), ("citation", src["citation"]),
    ] + ([("shards directory", src["shards"])] if "shards" in src else []))
    out += ["Cleaning: " + ", ".join(f"{k}={_fmt(v)}" for k, v in d["filters"].items()), ""]
    rows = []
    for lang in d["languages"]:
        removed = lang["removed"]
        removed_text = (
            ", ".join(f"{k} {v:,}" for k, v in removed.items() if _num(v) and v) or "none"
            if isinstance(removed, dict) else removed
        )
        rows.append([
            f"{lang['lang']} ({lang['name']})", lang["raw_documents"], lang["raw_bytes"], lang["documents"], lang["bytes"],
            removed_text, lang["tokens"], lang["weight"], lang["expected_epochs"], lang["expected_training_tokens"],
        ])
    if rows:
        t_ = d["totals"]
        rows.append(["**total**", t_["raw_documents"], t_["raw_bytes"], t_["documents"], t_["bytes"], "", t_["tokens"], "", "", ""])
        out += _table(
            ["language", "raw docs", "raw bytes", "docs after cleaning", "bytes after cleaning", "removed",
             "tokens", "weight", "expected epochs", "expected training tokens"],
            rows, right=[1, 2, 3, 4, 6, 7, 8, 9],
        )
        out += _decontamination(d["languages"])
        out += ["Raw input shards:", ""]
        shard_rows = []
        for lang in d["languages"]:
            if isinstance(lang["raw_shards"], list):
                for shard in lang["raw_shards"]:
                    shard_rows.append([lang["lang"], f"`{shard['path']}`", _short(shard["sha256"]), shard["size"], shard["on_disk"]])
            else:
                shard_rows.append([lang["lang"], lang["raw_shards"], "", "", ""])
        out += _table(["language", "shard", "sha256", "bytes", "on disk"], shard_rows, right=[3])
    else:
        out += [f"Per-language data: {NOT_RECORDED}", ""]
    out += _notes(d["notes"])

    out += ["## 3. Sampling", ""]
    out += _kv([
        ("policy", s["policy"]), ("rule", s["description"]), ("config", s["config"]),
        ("blend parameters", s["blend_params"]), ("blend file", _file(s["blend_file"])),
    ])
    if isinstance(s["weights"], dict):
        out += _table(
            ["language", "natural share", "weight"],
            [[lang, _percent(s["natural_shares"][lang]), w] for lang, w in s["weights"].items()], right=[1, 2],
        )
    out += _notes(s["notes"])

    out += ["## 4. Tokenizer", ""]
    out += _kv([
        ("type", t["type"]), ("vocabulary size", t["vocab_size"]), ("character coverage", t["character_coverage"]),
        ("training sample (chars)", t["sample_chars"]), ("artifact", _file(t["artifact"])),
    ])
    par = t["parity"]
    if isinstance(par, dict) and "languages" in par:
        out += [
            f"Parity (tokens relative to {_fmt(par['reference'])} on {_fmt(par['data'])}, splits {_fmt(par['splits'])}): "
            f"mean {_fmt(par['mean_parity'])}, highest {_lang_value(par['max_parity'])}, "
            f"lowest {_lang_value(par['min_parity'])}. "
            f"Report: {_file(par['file'])}",
            "",
        ]
        out += _table(
            ["language", "parity", "tokens/word", "chars/token", "byte fallback share"],
            [[lang, r["parity"], r["tokens_per_word"], r["chars_per_token"], r["byte_fallback_share"]] for lang, r in par["languages"].items()],
            right=[1, 2, 3, 4],
        )
        out += _notes(par["notes"])
    else:
        out += [f"Parity report: {_file(par['file']) if isinstance(par, dict) else NOT_RECORDED}", ""]
    out += _notes(t["notes"])

    out += ["## 5. Compute", ""]
    for site in c["sites"]:
        pairs = [
            ("site", site["site"]), ("jobs (attempts, failed)", f"{site['jobs']} ({site['job_attempts']}, {site['failed_attempts']})"),
            ("wall-hours (sum of job durations)", site["wall_hours"]), ("accounting", site["accounting"]),
        ]
        if site["slurm_allocations"]:
            pairs += [
                ("GPU-hours (sum of elapsed x GPUs)", site["gpu_hours"]), ("node-hours", site["node_hours"]),
                ("partitions", site["partitions"]), ("energy (kWh)", site["energy_kwh"]), ("energy", site["energy"]),
                ("largest max RSS (bytes)", site["max_rss_bytes"]),
            ]
        else:
            pairs += [
                ("CPU wall-hours", site["cpu_wall_hours"]), ("CPU core-hours (duration x threads)", site["cpu_core_hours"]),
                ("GPU-hours", site["gpu_hours"]), ("energy", site["energy"]),
            ]
        out += _kv(pairs)
    out += _table(["rule", "attempts", "wall-hours", "GPU-hours"],
                  [[r["rule"], r["attempts"], r["wall_hours"], r["gpu_hours"]] for r in c["by_rule"]], right=[1, 2, 3])
    out += _notes(c["notes"])

    out += ["## 6. Evaluation", "", f"Report: {_file(e['report'])}", ""]
    if isinstance(e["bpb"], dict):
        b = e["bpb"]
        out += [
            f"Bits per byte on FLORES-200 ({_fmt(b['split'])} split): macro mean {_fmt(b['macro_mean_bpb'])}, "
            f"micro {_fmt(b['micro_bpb'])}, uniform-byte baseline {_fmt(b['baseline_bpb'])}.",
            "",
        ]
        out += _table(
            ["language", "bpb", "sentences", "bytes", "note"],
            [[lang, r["bpb"], r["sentences"], r["bytes"], r["derived_from"] or ""] for lang, r in b["languages"].items()],
            right=[1, 2, 3],
        )
    else:
        out += [f"Bits per byte: {NOT_RECORDED}", ""]
    if isinstance(e["multiple_choice"], dict):
        mc = e["multiple_choice"]
        out += [f"Multiple choice (at most {_fmt(mc['max_items'])} items per task and language):", ""]
        out += _table(
            ["task", "language", "items", "accuracy", "normalized accuracy", "chance"],
            [[task, lang, r["n"], r["acc"], r["acc_norm"], r["chance"]] for task, langs in mc["tasks"].items() for lang, r in langs.items()],
            right=[2, 3, 4, 5],
        )
    else:
        out += [f"Multiple choice: {NOT_RECORDED}", ""]
    if isinstance(e.get("sets"), dict):
        out += ["Evaluation sets (never in a training or tokenizer corpus; each file with its sha256 in the data bundle manifest):", ""]
        out += _table(["dataset", "licence", "files", "bytes"],
                      [[name, r["licence"], r["files"], r["bytes"]] for name, r in e["sets"].items()], right=[2, 3])
    out += _notes(e["notes"])

    out += ["## 7. Outputs", ""]
    rows = []
    for category, label in (("checkpoint", "checkpoint"), ("hf_export", "Hugging Face export"),
                            ("importance_matrix", "importance matrix"), ("quantized_model", "quantized model")):
        if category == "importance_matrix" and not isinstance(o[category], list):
            continue  # a run without K-quants has none
        if isinstance(o[category], list):
            for entry in o[category]:
                extra = ""
                if category == "quantized_model" and _num(entry.get("mean_bpb")):
                    extra = f"mean bpb {_fmt(entry['mean_bpb'])} (delta {_fmt(entry['mean_delta_vs_reference_bpb'])})"
                rows.append([label, f"`{entry['path']}`", entry["kind"], entry["sha256"], entry["size"], entry["on_disk"], extra])
        else:
            rows.append([label, o[category], "", "", "", "", ""])
    out += _table(["output", "path", "kind", "sha256", "bytes", "on disk", "quality"], rows, right=[4])
    out += _notes(o["notes"])

    out += ["## 8. Provenance", ""]
    out += _kv([
        ("run id", p["run_id"]), ("status", p["status"]), ("started (UTC)", p["started_at"]), ("ended (UTC)", p["ended_at"]),
        ("git commit", p["git_commit"]), ("uncommitted changes", p["git_dirty"]), ("diff sha256", p["git_diff_sha256"]),
        ("config sha256", p["config_hash"]), ("config file", p["config_path"]), ("Snakemake", p["snakemake_version"]),
        ("command", p["command"]), ("host", p["host"]), ("site", p["site"]),
    ])
    if isinstance(p["packages"], dict):
        out += _table(["package", "version"], [[k, v] for k, v in p["packages"].items()])
    else:
        out += [f"Packages: {NOT_RECORDED}", ""]
    return "\n".join(out).rstrip() + "\n"
