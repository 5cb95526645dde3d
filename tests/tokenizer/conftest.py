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
    """Clean shards, blend and the trained tokenizer of the tiny run (vocab 8000, 4M characters)."""
    from euroflow.data.clean import clean_with_config
    from euroflow.data.ntrex import build_ntrex_shard
    from euroflow.data.sampling import write_blend
    from euroflow.tokenizer.train import train_tokenizer

    work = tmp_path_factory.mktemp("pipeline")
    clean, stats = {}, []
    for lang in run_config["languages"]:
        build_ntrex_shard(data_root, lang, work / "raw" / f"{lang}.jsonl.zst")
        clean[lang] = work / "clean" / f"{lang}.jsonl.zst"
        stats.append(work / "stats" / f"{lang}.json")
        clean_with_config([work / "raw" / f"{lang}.jsonl.zst"], clean[lang], stats[-1], run_config, lang=lang)
    write_blend(stats, run_config["sampling"], str(work / "indexed"), work / "blend", run_config["languages"])
    summary = train_tokenizer(run_config, clean, work / "blend" / "blend.json", work / "tokenizer")
    return {"work": work, "clean": clean, "blend": work / "blend" / "blend.json", "tokenizer": work / "tokenizer", "summary": summary}
