"""The demo tokenizer, built the way the pipeline builds it: 35 NTREX shards -> clean -> blend -> train."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "workflow" / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def run_config(data_root) -> dict:
    from euroflow import config

    raw = yaml.safe_load(TINY.read_text())
    raw["paths"]["data_root"] = str(data_root)
    return config.validate(raw, str(TINY))


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, run_config, data_root) -> dict:
    """Prepared shards, language weights and the trained tokenizer of the tiny run (vocab 8000, 4M characters)."""
    from euroflow.data.ntrex import build_ntrex_shard
    from euroflow.data.prepare import prepare_shard
    from euroflow.data.sampling import write_weights
    from euroflow.data.statistics import deduplicate_language
    from euroflow.tokenizer.train import train_tokenizer

    work = tmp_path_factory.mktemp("pipeline")
    clean, stats = {}, []
    for lang in run_config["languages"]:
        build_ntrex_shard(data_root, lang, work / "raw" / f"{lang}.jsonl.zst")
        clean[lang] = work / "clean" / f"{lang}.jsonl.zst"
        report = work / "clean" / f"{lang}.report.json"
        prepare_shard(work / "raw" / f"{lang}.jsonl.zst", lang, clean[lang], work / "clean" / f"{lang}.sig.npz",
                      work / "clean" / f"{lang}.lengths.npy", report, run_config["data"])
        stats.append(work / "stats" / f"{lang}.json")
        deduplicate_language([report], lang, work / "dedup" / f"{lang}.npz", stats[-1], run_config["data"])
    write_weights(stats, run_config["sampling"], work / "blend" / "weights.json", run_config["languages"])
    summary = train_tokenizer(run_config, clean, work / "blend" / "weights.json", work / "tokenizer")
    return {"work": work, "clean": clean, "blend": work / "blend" / "weights.json", "tokenizer": work / "tokenizer", "summary": summary}
