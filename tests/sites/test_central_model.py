"""The central-model recipe (workflow/configs/eu-9b.yaml): a 9.3 B Llama-style model that plans and
passes the site check on all four EuroHPC sites with a layout that fits their 64 GB (94 GB) GPUs."""

from __future__ import annotations

import pytest

from euroflow import config as run_config
from euroflow import sites
from euroflow.model_size import parameter_count
from euroflow.sites import check, memory, plan

EU_9B = run_config.REPO_ROOT / "workflow" / "configs" / "eu-9b.yaml"
ACCOUNTS = {"lumi": "project_462000353", "leonardo": "EUHPC_E03_068", "marenostrum5": "ehpc123", "snellius": "eus12345"}


def test_the_recipe_is_a_9b_llama_with_grouped_query_attention():
    config = run_config.load(EU_9B)
    model, training = config["model"], config["training"]
    assert parameter_count(model, config["tokenizer"]["vocab_size"], 1)["total"] == 9_261_355_008
    assert (model["num_attention_heads"], model["num_query_groups"], model["seq_length"]) == (32, 8, 4096)
    assert training["train_steps"] * training["global_batch_size"] * model["seq_length"] == 2_013_265_920_000
    # without model parallelism and the sharded optimizer it cannot fit any of the sites' GPUs
    alone = memory.estimate(model, 65536, tp=1, pp=1, dp=1, micro_batch_size=1, seq_length=4096, precision="bf16")
    assert alone.gib("weights") + alone.gib("gradients") + alone.gib("optimizer") > 150 and not memory.fits(alone, 94)


@pytest.mark.parametrize("name, per_node", [("lumi", 8), ("leonardo", 4), ("marenostrum5", 4), ("snellius", 4)])
def test_the_central_model_plans_on_each_site(name, per_node):
    result = plan.plan(run_config.load(EU_9B), sites.load(name), nodes=64)
    mem = result["memory"]
    assert (mem["tp"], mem["pp"], mem["dp"], mem["micro_batch_size"]) == (4, 1, 64 * per_node // 4, 1)
    assert mem["fits"] and mem["gib"]["total"] < 0.6 * result["gpu"]["memory_gb"]
    assert {"tp": 4, "pp": 1, "dp": 64 * per_node // 4, "gib_per_gpu": round(mem["gib"]["total"], 1)} in result["fitting"]["layouts"]
    # Adam's state split over the data-parallel ranks: 2 + 4 bytes per parameter of the TP shard, and 12 / DP
    shard = mem["gib"]["weights"] / 2
    assert mem["gib"]["optimizer"] == pytest.approx(12 * shard / mem["dp"], abs=0.01)


@pytest.mark.parametrize("name", sorted(ACCOUNTS))
def test_the_site_check_passes_on_each_site(name, monkeypatch):
    monkeypatch.setenv("SBATCH_ACCOUNT", ACCOUNTS[name])
    result = check.check(name, EU_9B)
    assert result.problems == [], result.problems
    assert result.verdict.startswith(f"site check {name}: OK: ") and "TP=4 PP=1 DP=" in result.verdict
