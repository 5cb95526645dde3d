"""The size of the Llama-style GPT euroflow builds, from a run config's ``model`` section,
without importing torch (shared by the training card and the planner)."""

from __future__ import annotations

import math
from typing import Any


def padded_vocab_size(vocab_size: int, tensor_parallel_size: int = 1) -> int:
    """Embedding rows: the vocabulary rounded up to a multiple of the tensor-parallel size
    (as euroflow.train.model.padded_vocab_size, without importing torch)."""
    return int(math.ceil(vocab_size / tensor_parallel_size) * tensor_parallel_size)


def parameter_count(model: dict[str, Any], vocab_size: int, tensor_parallel_size: int = 1) -> dict[str, int]:
    """Parameters of the Llama-style GPT euroflow builds from a ``model`` config section.

    Embedding ``V*h`` (plus an output layer ``V*h`` unless embeddings are tied); per layer:
    attention q and o ``h*h`` each, k and v ``h*(groups*head_dim)`` each (GQA), SwiGLU MLP
    ``3*h*ffn`` (gate, up, down), two RMSNorm weights ``2*h``; one final RMSNorm ``h``.
    No biases; rotary embeddings have no parameters. ``V`` is the padded vocabulary.
    """
    layers, hidden, ffn = model["num_layers"], model["hidden_size"], model["ffn_hidden_size"]
    heads = model["num_attention_heads"]
    groups = model.get("num_query_groups") or heads
    head_dim = hidden // heads
    vocab = padded_vocab_size(vocab_size, tensor_parallel_size)
    embedding = vocab * hidden
    output_layer = 0 if model.get("tie_embeddings") else vocab * hidden
    attention = layers * (2 * hidden * heads * head_dim + 2 * hidden * groups * head_dim)
    mlp = layers * 3 * hidden * ffn
    norms = layers * 2 * hidden + hidden
    total = embedding + output_layer + attention + mlp + norms
    return {
        "embedding": embedding,
        "output_layer": output_layer,
        "attention": attention,
        "mlp": mlp,
        "norms": norms,
        "total": total,
        "non_embedding": attention + mlp + norms,
    }
