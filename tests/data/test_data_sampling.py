"""Sampling weights on hand-checkable numbers, and the blend files' formats."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from euroflow import config as run_config
from euroflow.data import cli
from euroflow.data.sampling import (
    blend_markdown,
    compute_blend,
    compute_weights,
    per_split_data_args,
    explicit_weights,
    temperature_weights,
    unimax_allocation,
    unimax_weights,
)
from euroflow.errors import EuroflowError

TINY = Path(__file__).resolve().parents[2] / "workflow" / "configs" / "tiny.yaml"
SIZES = {"a": 100, "b": 400, "c": 1600}


def test_temperature_alpha_one_is_proportional():
    w = temperature_weights(SIZES, alpha=1.0)
    assert w == pytest.approx({"a": 100 / 2100, "b": 400 / 2100, "c": 1600 / 2100})


def test_temperature_alpha_half_by_hand():
    # sqrt: 10, 20, 40 -> 1/7, 2/7, 4/7
    assert temperature_weights(SIZES, alpha=0.5) == pytest.approx({"a": 1 / 7, "b": 2 / 7, "c": 4 / 7})


def test_temperature_small_alpha_tends_to_uniform():
    w = temperature_weights(SIZES, alpha=1e-6)
    assert max(w.values()) - min(w.values()) < 1e-5
    default = temperature_weights(SIZES)  # alpha 0.3 lies between
    assert w["a"] > default["a"] > 100 / 2100


def test_temperature_empty_language_gets_zero():
    assert temperature_weights({"a": 0, "b": 5}, 0.3) == {"a": 0.0, "b": 1.0}


def test_unimax_by_hand_with_caps():
    sizes = {"c": 1000, "a": 10, "b": 100}
    # budget 600, 2 epochs: a: min(200, 20) = 20; b: min(580/2 = 290, 200) = 200; c: 380
    alloc = unimax_allocation(sizes, budget=600, max_epochs=2)
    assert alloc == pytest.approx({"c": 380, "a": 20, "b": 200})
    assert unimax_weights(sizes, 600, 2) == pytest.approx({"c": 380 / 600, "a": 20 / 600, "b": 200 / 600})
    assert all(alloc[k] <= 2 * sizes[k] for k in sizes)


def test_unimax_uniform_when_no_cap_binds_and_all_capped_when_budget_huge():
    sizes = {"a": 1000, "b": 2000, "c": 3000}
    assert unimax_weights(sizes, budget=300, max_epochs=1) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    alloc = unimax_allocation(sizes, budget=10**9, max_epochs=4)
    assert alloc == pytest.approx({"a": 4000, "b": 8000, "c": 12000})


def test_explicit_weights_normalized_and_negative_names_key():
    assert explicit_weights({"a": 1, "b": 3}, ["a", "b"]) == {"a": 0.25, "b": 0.75}
    with pytest.raises(EuroflowError, match=r"^sampling\.weights\.b: negative weight -2"):
        explicit_weights({"a": 1, "b": -2}, ["a", "b"])
    with pytest.raises(EuroflowError, match=r"sampling\.weights\.b: missing"):
        explicit_weights({"a": 1}, ["a", "b"])


def test_schema_rejects_negative_weight_naming_key():
    cfg = yaml.safe_load(TINY.read_text())
    cfg["languages"] = ["de", "en"]
    cfg["sampling"] = {"policy": "explicit", "weights": {"de": 1.0, "en": -0.5}}
    with pytest.raises(EuroflowError, match=r"sampling\.weights\.en"):
        run_config.validate(copy.deepcopy(cfg), "x.yaml")


def _stats(lang, chars, docs=10):
    return {"lang": lang, "chars_out": chars, "docs_out": docs}


def test_compute_weights_contract_fields_and_epochs():
    weights = compute_weights(
        [_stats("de", 300), _stats("en", 100), _stats("ka", 0, 0)],
        {"policy": "explicit", "weights": {"de": 1, "en": 1, "ka": 0}},
        ["en", "de", "ka"],
    )
    assert [e["lang"] for e in weights["languages"]] == ["en", "de", "ka"]
    assert sum(e["weight"] for e in weights["languages"]) == pytest.approx(1.0)
    # budget = corpus (400 chars): en is read 0.5*400/100 = 2 times, de 0.5*400/300
    epochs = {e["lang"]: e["expected_epochs"] for e in weights["languages"]}
    assert epochs["ka"] is None
    assert epochs["en"] == pytest.approx(2.0) and epochs["de"] == pytest.approx(2 / 3)


def test_compute_weights_requires_stats_for_every_language():
    with pytest.raises(EuroflowError, match="no statistics for language ka"):
        compute_weights([_stats("de", 3)], {"policy": "temperature"}, ["de", "ka"])


def _report(prefix, train, valid):
    return {"tokens": {"train": train, "valid": valid}, "docs": {"train": 1, "valid": 1 if valid else 0},
            "prefixes": {"train": f"{prefix}.train", "valid": f"{prefix}.valid"}}


def test_blend_splits_a_language_weight_over_its_shards_per_split():
    weights = {"policy": "explicit", "params": {}, "languages": [
        {"lang": "de", "weight": 0.75}, {"lang": "en", "weight": 0.25}, {"lang": "ka", "weight": 0.0}]}
    reports = {"de": [_report("de/1", 300, 10), _report("de/2", 100, 0)], "en": [_report("en/1", 50, 5)],
               "ka": [_report("ka/1", 10, 1)]}
    blend = compute_blend(weights, reports, training_tokens=1000)
    assert blend["megatron_blend_per_split"]["train"] == [0.5625, "de/1.train", 0.1875, "de/2.train", 0.25, "en/1.train"]
    # the empty valid dataset of de/2 is left out, so de/1 carries all of de's valid weight
    assert blend["megatron_blend_per_split"]["valid"] == [0.75, "de/1.valid", 0.25, "en/1.valid"]
    assert blend["megatron_blend"] == blend["megatron_blend_per_split"]["train"]
    de = blend["languages"][0]
    assert (de["tokens_train"], de["tokens_valid"], de["expected_tokens"]) == (400, 10, 750)
    assert de["expected_epochs"] == pytest.approx(750 / 400)
    assert per_split_data_args(blend)["valid"] == ["0.75", "de/1.valid", "0.25", "en/1.valid"]
    with pytest.raises(EuroflowError, match="no tokenized shards for language ka"):
        compute_blend(weights, {**reports, "ka": []}, 1000)


def test_a_language_without_validation_tokens_is_a_warning_or_an_error():
    weights = {"policy": "explicit", "params": {}, "languages": [{"lang": "de", "weight": 0.5}, {"lang": "lv", "weight": 0.5}]}
    reports = {"de": [_report("de/1", 300, 10)], "lv": [_report("lv/1", 200, 0), _report("lv/2", 50, 0)]}
    blend = compute_blend(weights, reports, training_tokens=1000)
    assert blend["warnings"] == ["lv: no validation tokens after filtering and deduplication (0 documents in 2 shards)"]
    assert blend_markdown(blend).startswith("- **warning:** lv: no validation tokens")
    with pytest.raises(EuroflowError, match=r"^data.require_valid: 1 languages have no validation tokens \(lv\); raise data.valid_fraction"):
        compute_blend(weights, reports, training_tokens=1000, require_valid=True)
    assert compute_blend(weights, {**reports, "lv": [_report("lv/1", 200, 3)]}, 1000, require_valid=True)["warnings"] == []


def test_weights_cli_writes_json_and_table(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["languages"] = ["de", "en", "ka"]
    cfg["sampling"] = {"policy": "unimax", "unimax_max_epochs": 1, "budget_chars": 900}
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    stats = []
    for lang, chars in (("de", 1000), ("en", 200), ("ka", 500)):
        stats.append(tmp_path / f"{lang}.json")
        stats[-1].write_text(json.dumps(_stats(lang, chars)))
    out = tmp_path / "blend" / "weights.json"
    assert cli.main(["weights", "--config", str(cfg_path), "--stats", *map(str, stats), "--out", str(out)]) == 0
    weights = json.loads(out.read_text())
    # en: min(300, 200) = 200; ka: min(700/2 = 350, 500) = 350; de: 350
    assert {e["lang"]: e["weight"] for e in weights["languages"]} == pytest.approx({"de": 350 / 900, "en": 200 / 900, "ka": 350 / 900})
    assert weights["policy"] == "unimax" and weights["params"]["max_epochs"] == 1
    md = (out.parent / "weights.md").read_text()
    assert "| en | 10 | 200 |" in md and "unimax" in md


def test_weights_cli_rejects_negative_explicit_weight(tmp_path, capsys):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["languages"] = ["de", "en"]
    cfg["sampling"] = {"policy": "explicit", "weights": {"de": -1, "en": 1}}
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    stats = tmp_path / "de.json"
    stats.write_text(json.dumps(_stats("de", 10)))
    assert cli.main(["weights", "--config", str(cfg_path), "--stats", str(stats), "--out", str(tmp_path / "o" / "w.json")]) == 1
    assert "sampling.weights.de" in capsys.readouterr().err
    assert not (tmp_path / "o" / "w.json").exists()
