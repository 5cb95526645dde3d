"""The per-GPU training memory model (euroflow.sites.memory), checked by hand and against a measurement."""

from __future__ import annotations

import pytest

from euroflow import config as run_config
from euroflow.errors import EuroflowError
from euroflow.sites import memory
from euroflow.sites.memory import GIB

EU_1B = run_config.load(run_config.REPO_ROOT / "workflow" / "configs" / "eu-1b.yaml")["model"]
VOCAB = 65536
# eu-1b by hand: embedding and output layer 65536*2048 each; per layer q,o 2*2048*2048, k,v
# 2*2048*1024, SwiGLU 3*2048*5632, two norms 2*2048; a final norm 2048
EU_1B_PARAMETERS = 2 * 65536 * 2048 + 22 * (2 * 2048 * 2048 + 2 * 2048 * 1024 + 3 * 2048 * 5632 + 2 * 2048) + 2048
# Llama-2-7B's shape at a 2k context
LLAMA_7B = {"num_layers": 32, "hidden_size": 4096, "ffn_hidden_size": 11008, "num_attention_heads": 32,
            "num_query_groups": 32, "seq_length": 2048, "tie_embeddings": False}


# the logits' bf16 copy and fp32 gradient while the loss is differentiated, per micro batch of 4096
LOSS_MOMENT = 6 * 4096 * 65536
# per layer, whatever the micro batch: the rotary cosines and sines for queries and keys, bf16
ROPE = 4 * 2 * 4096 * 128


def eu_1b(**kwargs) -> memory.MemoryEstimate:
    """eu-1b's shape under megatron's unfused attention (the layer measured on an H100), unless told otherwise."""
    layout = {"tp": 1, "pp": 1, "dp": 1, "micro_batch_size": 1, "seq_length": 4096, "precision": "bf16", "attention": "unfused"} | kwargs
    return memory.estimate(EU_1B, VOCAB, **layout)


def test_eu_1b_one_micro_batch_by_hand():
    estimate = eu_1b()
    assert EU_1B_PARAMETERS == 1_306_617_856
    # bf16 weights, fp32 main gradients, fp32 master weights + Adam m and v: 2 + 4 + 12 bytes
    assert (estimate.weights, estimate.gradients, estimate.optimizer) == (
        2 * EU_1B_PARAMETERS, 4 * EU_1B_PARAMETERS, 12 * EU_1B_PARAMETERS,
    )
    sbh = 4096 * 1 * 2048
    per_layer = sbh * (16 + 2 * 2 + (4 * 2 + 5 * 2 * 5632 / 2048 + 6 * 16 * 4096 / 2048))  # 247.5 s*b*h
    ids = 16 * 4096
    logits = (8 + 2) * sbh + 4 * 4096 * 65536 + LOSS_MOMENT
    assert estimate.activations == 22 * (per_layer + ROPE) + ids + logits == 48_536_551_424
    assert estimate.overhead == 3 * GIB
    assert estimate.total == 18 * EU_1B_PARAMETERS + 48_536_551_424 + 3 * GIB
    assert estimate.stage == "only"
    assert estimate.as_gib()["total"] == round(estimate.total / GIB, 2) == 70.11


def test_eu_1b_agrees_with_a_measurement_on_an_h100():
    """One H100 80GB, euroflow's build_model, TP = PP = 1, one micro batch of 4096 tokens: 44.05 GiB of
    activations saved by the forward pass, 22.47 GiB of weights, gradients and Adam states after the
    first optimizer step, 71.57 GiB of the device in use at the peak of the second step."""
    estimate = eu_1b()
    assert (estimate.activations - LOSS_MOMENT) / GIB == pytest.approx(44.05, rel=0.02)  # what the forward pass saves
    assert estimate.gib("weights") + estimate.gib("gradients") + estimate.gib("optimizer") == pytest.approx(22.47, rel=0.03)
    assert estimate.gib() == pytest.approx(71.57, rel=0.05)
    assert memory.fits(estimate, 80)  # it ran
    assert not memory.fits(eu_1b(micro_batch_size=2), 80)  # out of memory on the H100


def test_unfused_attention_needs_tensor_parallelism_on_64_gb():
    """Micro batch 4 at 4096 tokens: the unfused attention keeps 6*a*s*s*b bytes of scores per layer. Even one
    micro batch (70.1 GiB) is over 90% of 64 GB without TP (eu-1b shipped micro batch 1 with TP=2 this way)."""
    assert not memory.fits(eu_1b(), 64) and memory.fits(eu_1b(tp=2), 64)
    configured = eu_1b(micro_batch_size=4)
    assert configured.gib() == pytest.approx(205.5, abs=0.05)
    assert not memory.fits(configured, 64) and not memory.fits(configured, 94)
    assert not memory.fits(eu_1b(micro_batch_size=4, tp=4), 64)
    assert memory.fits(eu_1b(micro_batch_size=4, tp=4), 94)
    assert memory.fits(eu_1b(micro_batch_size=4, tp=8), 64)
    recomputed = eu_1b(micro_batch_size=4, recompute="selective")
    scores = 22 * 4096 * 4 * 2048 * 6 * 16 * 4096 / 2048
    assert configured.activations - recomputed.activations == scores


def test_sdpa_keeps_neither_scores_nor_expanded_keys_and_values():
    """eu-1b as shipped: SDPA, TP 1, the distributed optimizer over 16 data-parallel ranks (4 LUMI nodes)."""
    sbh = 4096 * 2 * 2048
    shipped = eu_1b(attention="sdpa", micro_batch_size=2, dp=16, distributed_optimizer=True)
    # the QKV output (1 + 2*8/16), the rotated queries and keys (1 + 8/16), the context: 4.5 x 2 bytes; the
    # fp32 log-sum-exp 4*16/2048 per s*b*h, SwiGLU's 27.5; 20 replicated
    per_layer = sbh * (20 + 9 + 4 * 16 / 2048 + 27.5) + ROPE
    assert shipped.activations == round(22 * per_layer + 16 * 4096 * 2 + 10 * sbh + 2 * (4 * 4096 * 65536 + LOSS_MOMENT))
    assert shipped.optimizer == round(12 * EU_1B_PARAMETERS / 16)
    assert round(shipped.gib(), 2) == 35.89 and memory.fits(shipped, 64)
    assert not memory.fits(eu_1b(attention="sdpa", micro_batch_size=4, dp=16, distributed_optimizer=True), 64)  # 60.5 GiB
    # selective recomputation has only the log-sum-exp left to drop
    selective = eu_1b(attention="sdpa", micro_batch_size=2, dp=16, distributed_optimizer=True, recompute="selective")
    assert shipped.activations - selective.activations == round(22 * sbh * 4 * 16 / 2048)


def test_full_recomputation_and_sequence_parallelism():
    sbh = 4096 * 2048
    layer = sbh * (20 + 9 + 4 * 16 / 2048 + 27.5) + ROPE
    logits = 10 * sbh + 4 * 4096 * 65536 + LOSS_MOMENT
    full = eu_1b(attention="sdpa", recompute="full")
    assert full.activations == round(22 * 2 * sbh + layer + 16 * 4096 + logits)  # layer inputs, one layer in the backward pass
    parallel = eu_1b(attention="sdpa", tp=2, sequence_parallel=True)
    plain = eu_1b(attention="sdpa", tp=2)
    assert parallel.activations == round(22 * (sbh * (20 + 36.53125) / 2 + ROPE) + 16 * 4096 + (8 / 2 + 2) * sbh + (4 * 4096 * 65536 + LOSS_MOMENT) / 2)
    assert parallel.activations < plain.activations
    with pytest.raises(EuroflowError, match="training.recompute: 'some'"):
        eu_1b(recompute="some")
    with pytest.raises(EuroflowError, match="training.attention: 'flash'"):
        eu_1b(attention="flash")


def test_tensor_parallelism_splits_all_but_the_replicated_activations():
    sbh = 4096 * 2048
    one, two = eu_1b(), eu_1b(tp=2)
    per_layer = sbh * (20 + (8 + 27.5 + 192) / 2)
    logits = 10 * sbh + (4 * 4096 * 65536 + LOSS_MOMENT) / 2
    assert two.activations == round(22 * (per_layer + ROPE) + 16 * 4096 + logits)
    assert two.weights == one.weights / 2


def test_the_first_pipeline_stage_holds_pp_micro_batches():
    one, two = eu_1b(), eu_1b(pp=2)
    assert two.stage == "first"
    sbh = 4096 * 2048
    per_layer = sbh * 247.5 + ROPE
    assert two.activations == 2 * (11 * per_layer + 16 * 4096)  # as many layers' worth as without PP
    assert two.weights == 2 * (11 * (EU_1B_PARAMETERS - 2 * 65536 * 2048 - 2048) / 22 + 65536 * 2048)
    assert two.total < one.total  # the weights are split, the activations are not


def test_distributed_optimizer_and_fp32():
    assert eu_1b(dp=8, distributed_optimizer=True).optimizer == round(12 * EU_1B_PARAMETERS / 8)
    fp32 = eu_1b(precision="fp32")
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (4 * EU_1B_PARAMETERS, 4 * EU_1B_PARAMETERS, 8 * EU_1B_PARAMETERS)
    # every activation in 4 bytes, but the attention scores only once (no bf16 copy of the fp32 softmax)
    per_layer = 4096 * 2048 * (16 + 2 * 4 + (4 * 4 + 5 * 4 * 5632 / 2048 + 4 * 16 * 4096 / 2048))
    assert fp32.activations == 22 * (per_layer + 2 * ROPE) + 16 * 4096 + (8 + 4) * 4096 * 2048 + 4 * 4096 * 65536 + LOSS_MOMENT
    assert fp32.activations < eu_1b().activations


def test_layouts_the_model_cannot_take_are_errors():
    with pytest.raises(EuroflowError, match="training.tensor_model_parallel_size: 3 must divide"):
        eu_1b(tp=3)
    with pytest.raises(EuroflowError, match="training.pipeline_model_parallel_size: 4 must divide model.num_layers 22"):
        eu_1b(pp=4)
    with pytest.raises(EuroflowError, match="training.precision: 'fp16'"):
        eu_1b(precision="fp16")


def test_a_7b_model_needs_model_parallelism():
    single = memory.estimate(LLAMA_7B, 32000, tp=1, pp=1, dp=1, micro_batch_size=1, seq_length=2048, precision="bf16")
    assert single.gib("weights") + single.gib("gradients") + single.gib("optimizer") > 100  # 6.7 B x 18 bytes
    assert not memory.fits(single, 64)
    split = memory.estimate(LLAMA_7B, 32000, tp=4, pp=2, dp=1, micro_batch_size=1, seq_length=2048, precision="bf16")
    assert memory.fits(split, 64)


def test_suggest_parallelism_order_and_constraints():
    options = memory.suggest_parallelism(LLAMA_7B, 32000, gpus_per_node=4, gpu_memory_gb=64, nodes=2,
                                         micro_batch_size=1, seq_length=2048, precision="bf16", global_batch_size=256)
    layouts = [(tp, pp) for tp, pp, _ in options]
    assert layouts == sorted(layouts, key=lambda layout: (layout[0] * layout[1], layout[1]))
    assert (1, 1) not in layouts and (4, 2) in layouts
    for tp, pp, estimate in options:
        assert 4 % tp == 0 and 32 % pp == 0
        assert 256 % (8 // (tp * pp)) == 0
        assert memory.fits(estimate, 64)
    # TP must divide the query groups: with 2 groups an 8-GPU node offers TP 1 and 2 only
    two_groups = LLAMA_7B | {"num_query_groups": 2}
    options = memory.suggest_parallelism(two_groups, 32000, 8, 64, 1, 1, 2048, "bf16", 256)
    assert options and {tp for tp, _, _ in options} <= {1, 2}


def test_suggest_parallelism_needs_the_data_parallel_size_to_divide_the_micro_batches():
    # 16 nodes x 8 GCDs: TP=8 leaves DP=16, which divides 128 micro batches; 3 micro batches it does not
    unfused = {"attention": "unfused"}  # the scores of 4 sequences leave only TP=8
    assert [(tp, pp) for tp, pp, _ in memory.suggest_parallelism(EU_1B, VOCAB, 8, 64, 16, 4, 4096, "bf16", 512, **unfused)] == [(8, 1), (8, 2)]
    assert memory.suggest_parallelism(EU_1B, VOCAB, 8, 64, 16, 4, 4096, "bf16", 12, **unfused) == []
    # with SDPA and the distributed optimizer, four sequences of eu-1b need TP 2 (TP 1: 59.6 GiB even with
    # Adam's state split 128 ways, over the 57.6 usable); TP 2 with sequence parallelism: 31.5 GiB
    fast = {"distributed_optimizer": True, "sequence_parallel": True}
    options = memory.suggest_parallelism(EU_1B, VOCAB, 8, 64, 16, 4, 4096, "bf16", 512, **fast)
    assert [(tp, pp) for tp, pp, _ in options][0] == (2, 1) and round(options[0][2].gib(), 1) == 31.5
