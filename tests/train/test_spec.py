"""SDPA core attention against megatron-core's unfused DotProductAttention, and in a training run."""

from __future__ import annotations

import pytest
import torch

import train_corpus as corpus
from euroflow.train.loop import pretrain


@pytest.mark.parametrize("heads,groups", [(4, 4), (8, 2)])  # multi-head, and grouped-query attention
def test_sdpa_equals_megatrons_unfused_attention(model_parallel, heads, groups):
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from euroflow.train.spec import SDPAttention

    config = TransformerConfig(num_layers=1, hidden_size=16 * heads, num_attention_heads=heads, num_query_groups=groups,
                               use_cpu_initialization=True, masked_softmax_fusion=False, attention_dropout=0.0, cuda_graph_scope=[])
    seq, batch, dim = 37, 3, 16
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(seq, batch, heads, dim, generator=generator, requires_grad=True)
    key = torch.randn(seq, batch, groups, dim, generator=generator, requires_grad=True)
    value = torch.randn(seq, batch, groups, dim, generator=generator, requires_grad=True)
    outputs, grads = [], []
    for module in (DotProductAttention, SDPAttention):
        attention = module(config, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")
        out = attention(query, key, value, None)
        assert out.shape == (seq, batch, heads * dim)
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        outputs.append(out.detach())
        grads.append([t.grad.clone() for t in (query, key, value)])
        for t in (query, key, value):
            t.grad = None
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # the first position sees only itself: causal, not a full mask
    torch.testing.assert_close(outputs[1][0].reshape(batch, heads, dim), value[0].detach().repeat_interleave(heads // groups, dim=1))


def test_training_with_unfused_attention_follows_the_same_curve(tmp_path, train_inputs, reference_run):
    """The reference run (sdpa, the default) and megatron's unfused attention: the same losses to fp32 noise."""
    config = corpus.tiny_config(attention="unfused")
    summary = pretrain(config, train_inputs["blend"], train_inputs["tokenizer"], tmp_path, stop_after_step=10)
    assert summary["last_step"] == 10
    unfused = [e["loss"] for e in corpus.read_log(tmp_path)]
    assert unfused == pytest.approx([e["loss"] for e in reference_run["log"][:10]], abs=1e-4)
