"""A Llama-style megatron-core GPTModel built from the run config's ``model`` section."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from euroflow.train import shims


def quiet_megatron_warnings() -> None:
    """Silence notices that only say optional GPU extensions are absent or APIs are deprecated."""
    for message in (
        "Transformer Engine and Apex are not installed",
        "Apex is not installed",
        "Please use DTensor instead and we are deprecating ShardedTensor",
        "`load_state_dict` is deprecated",
        "When using async grad allreduce it is recommended",
        # torch deprecations megatron-core's buffers and optimizer trigger, and its grad-attribute probe
        "`torch.distributed.all_gather_into_tensor` is deprecated",
        "`torch.distributed.reduce_scatter_tensor` is deprecated",
        "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed",
        "If you are using transformer_engine as the transformer implementation, the core_attn",  # we are not
    ):
        warnings.filterwarnings("ignore", message=message)


def padded_vocab_size(vocab_size: int, tensor_parallel_size: int) -> int:
    """The embedding rows: the tokenizer's vocabulary, rounded up so each TP rank holds an equal slice."""
    return int(math.ceil(vocab_size / tensor_parallel_size) * tensor_parallel_size)


def params_dtype(config: dict) -> torch.dtype:
    return torch.bfloat16 if config["training"]["precision"] == "bf16" else torch.float32


def transformer_config(config: dict):
    """megatron-core TransformerConfig: RMSNorm, SwiGLU, GQA, no biases, no dropout."""
    from megatron.core.transformer import TransformerConfig

    model, training = config["model"], config["training"]
    dtype = params_dtype(config)
    return TransformerConfig(
        num_layers=model["num_layers"],
        hidden_size=model["hidden_size"],
        ffn_hidden_size=model["ffn_hidden_size"],
        num_attention_heads=model["num_attention_heads"],
        num_query_groups=model["num_query_groups"],
        normalization="RMSNorm",
        layernorm_epsilon=model["norm_epsilon"],
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=model["init_method_std"],
        tensor_model_parallel_size=training["tensor_model_parallel_size"],
        pipeline_model_parallel_size=training["pipeline_model_parallel_size"],
        use_cpu_initialization=True,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        # training.fusions: megatron's own fused SwiGLU, bias-dropout-add and vocab-parallel cross entropy
        # (torch code under torch.compile, so they run wherever torch does); the softmax, norm and rotary
        # fusions need Apex or Transformer Engine and stay off.
        bias_activation_fusion=training["fusions"],
        bias_dropout_fusion=training["fusions"],
        cross_entropy_loss_fusion=training["fusions"],
        cross_entropy_fusion_impl="native",
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        cuda_graph_scope=[],  # the default "full" is deprecated and only warns
        sequence_parallel=training["sequence_parallel"],
        **_recompute(training["recompute"]),
    )


def _recompute(choice: str) -> dict:
    """TransformerConfig's recompute settings for ``training.recompute``."""
    if choice == "selective":  # megatron's default module set: the core attention
        return {"recompute_granularity": "selective", "recompute_modules": ["core_attn"]}
    if choice == "full":  # every layer from its input, as Megatron-LM's --recompute-method uniform --recompute-num-layers 1
        return {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    return {}


def build_model(config: dict, vocab_size: int, *, pre_process: bool = True, post_process: bool = True):
    """The GPTModel for this rank (model parallel state must be initialized)."""
    quiet_megatron_warnings()
    shims.apply()
    from megatron.core.models.gpt import GPTModel

    from euroflow.train.spec import block_spec

    model = config["model"]
    tp = config["training"]["tensor_model_parallel_size"]
    transformer = transformer_config(config)
    gpt = GPTModel(
        config=transformer,
        transformer_layer_spec=block_spec(transformer, config["training"]["attention"]),
        vocab_size=padded_vocab_size(vocab_size, tp),
        max_sequence_length=model["seq_length"],
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=model["tie_embeddings"],
        position_embedding_type="rope",
        rotary_base=model["rotary_base"],
    )
    if torch.cuda.is_available():
        gpt.cuda(torch.cuda.current_device())
    if config["training"]["compile"]:  # per layer, as torchtitan does: one graph, reused by every layer
        for layer in gpt.decoder.layers:
            layer.compile()
    return gpt
