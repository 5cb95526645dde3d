"""The transformer block spec: megatron-core's local GPT layers (RMSNorm, SwiGLU, rotary) with core
attention through ``torch.nn.functional.scaled_dot_product_attention`` and norms that sequence
parallelism can use.

megatron-core's local spec computes attention unfused: it materializes the ``b x heads x s x s`` score
matrix, repeats K and V for every query head of a group (GQA), and runs the softmax in plain torch. That
holds the 1.37 B reference shape to micro batch 1-2 on a 64 GB GPU. ``SDPAttention`` keeps megatron's
module (same constructor, same ``[s, b, heads, dim]`` inputs, same ``[s, b, heads * dim]`` output) and
hands the work to SDPA: flash or memory-efficient kernels on CUDA (and on ROCm through aotriton), the math
kernel on CPU, with K/V groups broadcast by the kernel (``enable_gqa``) instead of copied. Transformer
Engine's attention is the other fast path, where TE is installed; this one needs nothing beyond torch.

The local spec's norm (``WrappedTorchNorm``) refuses sequence parallelism: with it each tensor-parallel
rank normalizes its own part of the sequence, so the norm weights' gradients are partial sums that
``finalize_model_grads`` must all-reduce over the tensor-parallel group, which it does for parameters
marked ``sequence_parallel`` (as Apex's and Transformer Engine's norms mark theirs). ``RMSNorm`` is torch's
with that mark.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType

from euroflow.errors import EuroflowError
from euroflow.sites.memory import ATTENTION  # training.attention's choices, one list for the model and its memory count



class SDPAttention(DotProductAttention):
    """megatron-core's ``DotProductAttention`` with the computation done by SDPA."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.softmax_type != "vanilla" or self.scale_mask_softmax.window_size is not None:
            raise EuroflowError("training.attention: sdpa has no sliding window or softmax offset; use 'unfused'")
        # megatron divides the scale by the layer number for fp16 and multiplies it back in its softmax
        self.scale = self.softmax_scale * (self.layer_number if self.config.apply_query_key_layer_scaling else 1)

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None, packed_seq_params=None):
        if packed_seq_params is not None or attention_bias is not None:
            raise EuroflowError("training.attention: sdpa takes no packed sequences or attention bias; use 'unfused'")
        seq, batch, heads, dim = query.shape
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads or groups, s, dim]
        causal = (attn_mask_type or self.attn_mask_type) == AttnMaskType.causal
        mask = None
        if attention_mask is not None:  # megatron's mask is True where attention is forbidden
            mask, causal = ~attention_mask, False
        dropout = self.attention_dropout.p if self.training else 0.0
        # as megatron's own: dropout draws from the model-parallel RNG unless sequence parallelism is on
        rng = tensor_parallel.get_cuda_rng_tracker().fork() if dropout and not self.config.sequence_parallel else contextlib.nullcontext()
        with rng:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale, dropout_p=dropout, enable_gqa=k.size(1) != heads,
            )
        return context.permute(2, 0, 1, 3).reshape(seq, batch, heads * dim)


class RMSNorm(torch.nn.RMSNorm):
    """torch's RMSNorm with megatron's norm constructor; its weight is marked for sequence parallelism."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **unused):
        super().__init__(hidden_size, eps=eps)
        self.weight.sequence_parallel = config.sequence_parallel


def block_spec(config, attention: str):
    """The block of this pipeline stage: megatron-core's local GPT layer spec (RMSNorm), the core attention
    of ``training.attention``, and :class:`RMSNorm` in every layer and after the last."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build

    if attention not in ATTENTION:
        raise EuroflowError(f"training.attention: {attention!r} is not one of {', '.join(ATTENTION)}")
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.input_layernorm = RMSNorm
    spec.submodules.pre_mlp_layernorm = RMSNorm
    if attention == "sdpa":
        spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return TransformerBlockSubmodules(layer_specs=[spec] * get_num_layers_to_build(config), layer_norm=RMSNorm)
