"""Sampling the tokenizer's training text for parity (tokenizer.sampling: parity)."""

from __future__ import annotations

import json

import pytest

from euroflow.tokenizer.balance import choose, next_multipliers, shares, spread, take


def test_the_costliest_languages_get_more_of_the_sample_within_max_factor():
    parity = {"en": 1.0, "de": 1.2, "el": 1.8, "ka": 7.0}
    mean = (1.0 * 1.2 * 1.8 * 7.0) ** 0.25
    multipliers = next_multipliers({lang: 1.0 for lang in parity}, parity, max_factor=3.0)
    assert multipliers["el"] == pytest.approx(1.8 / mean) and multipliers["en"] == pytest.approx(1.0 / mean)
    assert multipliers["ka"] == 3.0  # 7 / mean = 3.55 would be more: clipped
    got = shares({"en": 0.4, "de": 0.3, "el": 0.2, "ka": 0.1}, multipliers)
    assert sum(got.values()) == pytest.approx(1.0)
    assert got["el"] > 0.2 and got["en"] < 0.4
    assert spread(parity) == 7.0


def test_the_chosen_round_is_the_most_even_one_that_makes_no_language_much_worse():
    rounds = [
        {"dev_parity": {"en": 1.0, "el": 1.6, "nn": 0.99}},  # plain: spread 1.62
        {"dev_parity": {"en": 1.05, "el": 1.45, "nn": 1.0}},  # spread 1.45, everyone within 1.1x
        {"dev_parity": {"en": 1.2, "el": 1.3, "nn": 1.15}},  # spread 1.13, but en and nn got 1.2x / 1.16x worse
    ]
    assert choose(rounds, tolerance=1.1) == 1
    assert choose(rounds, tolerance=1.25) == 2
    assert choose(rounds[:1], tolerance=1.0) == 0  # the plain tokenizer always qualifies


def test_take_is_seeded_whole_lines_and_repeats_a_small_pool():
    pool = [f"line {i:03d}" for i in range(100)]  # 8 characters each
    first = take(pool, 200, "7:de")
    assert first == take(pool, 200, "7:de") and first != take(pool, 200, "8:de")
    assert sum(map(len, first)) == 200 and set(first) <= set(pool)
    assert len(take(pool, 2000, "7:de")) == 250  # two whole passes and a half
    assert take(pool, 0, "7:de") == [] and take([], 10, "7:de") == []


def test_the_demo_tokenizer_meets_the_parity_goal_on_flores_devtest(pipeline, data_root):
    """The issue's goal for the demo: max/min parity <= 1.5 on FLORES devtest, no language worse than 1.1x
    its plain-weighted parity; FLORES devtest never takes part in the choice."""
    from euroflow.tokenizer.parity import parity_report

    report = json.loads((pipeline["tokenizer"] / "parity_sampling.json").read_text())
    devtest = report["devtest"]
    assert devtest["spread"]["parity"] <= 1.5 < devtest["spread"]["plain_weighted"]
    assert devtest["worst_vs_plain"] <= 1.1 and devtest["target_met"] and devtest["tolerance_met"]
    assert "natural" in devtest["parity"]
    rounds = report["rounds"]
    assert rounds[report["chosen_round"]]["dev_spread"] < rounds[0]["dev_spread"]
    # the recorded figures are the shipped tokenizer's own
    measured = parity_report(pipeline["tokenizer"], data_root, list(devtest["parity"]["parity"]), splits=["test"])
    assert {lang: row["parity"] for lang, row in measured["languages"].items()} == devtest["parity"]["parity"]


def test_the_parity_report_carries_the_comparison(pipeline, data_root, tmp_path):
    from euroflow.tokenizer.parity import write_parity_report

    report = write_parity_report(pipeline["tokenizer"], data_root, ["en", "el", "ka"], tmp_path / "p.json", tmp_path / "p.md")
    assert report["sampling_for_parity"]["policy"] == "parity"
    markdown = (tmp_path / "p.md").read_text()
    assert "## Sampling for parity: chosen round" in markdown and "| el |" in markdown and "plain_weighted" in markdown
