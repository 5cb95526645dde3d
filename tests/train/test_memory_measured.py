"""The memory model (euroflow.sites.memory) against what autograd keeps of euroflow's own model, on CPU."""

from __future__ import annotations

import pytest
import torch

import train_corpus as corpus
from euroflow.sites import memory

VOCAB = 1000
SHAPE = {"num_layers": 4, "hidden_size": 256, "ffn_hidden_size": 704, "num_attention_heads": 4, "seq_length": 512}


def saved_bytes(gpt, tokens) -> int:
    """Bytes of the distinct storages the forward pass saves for backward (parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in gpt.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    positions = torch.arange(tokens.shape[1]).repeat(tokens.shape[0], 1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        gpt(tokens, positions, None, labels=tokens)
    return sum(storages.values())


# unfused with as many groups as heads keeps about 6 % more than counted (megatron expands nothing then,
# and other views stay alive): the count is for grouped-query attention, as eu-1b and eu-9b use
@pytest.mark.parametrize("attention, groups", [("sdpa", 1), ("sdpa", 2), ("sdpa", 4), ("unfused", 1), ("unfused", 2)])
def test_the_activation_count_matches_the_tensors_autograd_saves(attention, groups, model_parallel):
    from euroflow.train.model import build_model

    config = corpus.tiny_config(attention=attention)
    config["model"].update(SHAPE, num_query_groups=groups)
    gpt = build_model(config, VOCAB)
    tokens = torch.randint(0, VOCAB, (2, SHAPE["seq_length"]), generator=torch.Generator().manual_seed(0))
    measured = saved_bytes(gpt, tokens)
    estimate = memory.estimate(config["model"], VOCAB, tp=1, pp=1, dp=1, micro_batch_size=2, seq_length=SHAPE["seq_length"],
                               precision="fp32", attention=attention)
    # the loss's moment (logits' gradient) comes after the forward pass; the rest is what it saves
    kept = estimate.activations - 6 * 2 * SHAPE["seq_length"] * VOCAB
    assert kept == pytest.approx(measured, rel=0.03), (kept, measured)
