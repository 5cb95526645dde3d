"""Per-GPU memory of Megatron-Core training of euroflow's Llama-style GPT, before a job runs.

The estimate is for the most loaded pipeline stage (the first or the last, whichever is bigger)
and has four parts plus a fixed overhead:

Model and optimizer state, per parameter of the stage's shard (Megatron-LM's
``megatron/training/theoretical_memory_usage.py``; Rajbhandari et al. 2020, ZeRO, section 3.1):

* bf16 mixed precision (euroflow: ``grad_reduce_in_fp32=True``): bf16 weights 2 bytes, fp32 main
  gradients 4, fp32 master weights and Adam m and v 4 + 4 + 4 = 12; 18 bytes in all.
* fp32: weights 4, gradients 4, Adam m and v 8; 16 bytes in all.
* ``distributed_optimizer`` (Megatron's ``--use-distributed-optimizer``, ZeRO-1) shards the
  optimizer part over the data-parallel ranks: 6 + 12/dp bytes (bf16), 8 + 8/dp (fp32).

A stage holds ``num_layers/pp`` transformer layers; the first also the input embedding, the last
the output layer (a copy of the embedding when tied) and the final norm. Everything is divided by
``tp`` (the norms, replicated across TP ranks, are too small to matter). Parameters are counted
by :func:`euroflow.model_size.parameter_count` with the vocabulary padded for ``tp``.

Activations, counted the way Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", section 4.1 and Table 2: tensor parallelism, no sequence parallelism) count
them, but for the layer euroflow builds (megatron-core's local layer spec: torch RMSNorm, unfused
attention with the softmax in fp32, GQA keys and values expanded to all heads, SwiGLU, no
dropout), in bytes per transformer layer and micro batch::

    s*b*h * (16 + 2e + (4e + 5e*f/h + c*a*s/h) / t)

with s the sequence length, b the micro batch, h the hidden size, f the FFN size, a the attention
heads, t the tensor-parallel size and e the bytes of an activation (2 bf16, 4 fp32). Replicated on
every TP rank: the two RMSNorms keep an fp32 copy of their input and their fp32 normalized output
(4 x 4 bytes), and the QKV and FC1 layers their input (2e). Split over TP: queries, expanded keys
and values and the attention context (4e), the MLP's FC1 output (gate and up), SiLU output,
product and one more f-wide tensor (5e*f/h), and the s x s attention scores, kept as the fp32
softmax output plus its bf16 copy (c = 6; fp32 training: c = 4). The paper's GPT-3 layer gives
``s*b*h*(10 + 24/t + 5*a*s/(h*t))`` by the same method. ``recompute=True`` means selective
recomputation (the paper's section 4.2: the attention core is recomputed in the backward pass),
which drops the attention-score term; flash attention has the same effect on memory. Rotary
tables and the causal mask (s*head_dim and s*s bytes, no batch) are left out. Training's default
core attention is now SDPA (``training.attention: sdpa``, :mod:`euroflow.train.attention`), which keeps
neither the scores nor expanded keys and values: for it this model errs on the safe side (more memory
than used) until the SDPA layer is modelled and measured.

The formula was checked against the tensors autograd saves (``torch.autograd.graph.saved_tensors_hooks``
on euroflow's ``build_model``, bf16 and fp32) and against one NVIDIA H100 80GB (torch 2.11,
megatron-core 0.16.1, the eu-1b shape with TP = PP = 1 and one micro batch of 4096 tokens): 44.0 GiB
of saved activations measured against 43.6 GiB here (22 layers: 250 against 247.5 bytes per s*b*h
each), 22.5 GiB of weights, gradients and Adam states against 21.9, and 71.6 GiB of the device in use
at the peak against a 68.5 GiB total. Tensor parallelism was not measured (one GPU).

With pipeline parallelism under the 1F1B schedule (Narayanan et al. 2021) stage ``i`` holds
``pp - i`` micro batches in flight: the first stage ``pp`` micro batches of its ``num_layers/pp``
layers (so all ``num_layers`` layers' worth), plus their token and position ids (16*s*b bytes,
int64); the last stage one micro batch, plus the final RMSNorm's fp32 tensors (8*s*b*h), the output
layer's input (e*s*b*h) and the fp32 logits the cross entropy works on (4*s*b*V/t bytes, V the
padded vocabulary).

Overhead: a fixed 3 GiB for the CUDA/ROCm context (about 0.5-1 GiB), NCCL/RCCL communication
buffers (about 1 GiB) and allocator fragmentation; :func:`fits` also leaves 10% of the device
unused, for transient buffers (fp32 copies of the attention scores and of the logits while they
are computed, communication) that the accounting above does not keep.
"""

from __future__ import annotations

from dataclasses import dataclass

from euroflow.errors import EuroflowError
from euroflow.model_size import padded_vocab_size, parameter_count

GIB = 2**30
OVERHEAD_BYTES = 3 * GIB
USABLE_FRACTION = 0.9

# bytes per parameter: (weights, gradients, optimizer states)
BYTES_PER_PARAMETER = {"bf16": (2, 4, 12), "fp32": (4, 4, 8)}
ACTIVATION_BYTES = {"bf16": 2, "fp32": 4}
SCORE_BYTES = {"bf16": 6, "fp32": 4}  # fp32 softmax output, plus its bf16 copy under bf16


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU on the most loaded pipeline stage (``stage``: first, last or only)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    stage: str

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def gib(self, part: str = "total") -> float:
        return getattr(self, part) / GIB

    def as_gib(self) -> dict[str, float | str]:
        parts = ("weights", "gradients", "optimizer", "activations", "overhead", "total")
        return {part: round(self.gib(part), 2) for part in parts} | {"stage": self.stage}


def _check_layout(model: dict, tp: int, pp: int) -> None:
    heads = model["num_attention_heads"]
    groups = model.get("num_query_groups") or heads
    if heads % tp or groups % tp or model["ffn_hidden_size"] % tp:
        raise EuroflowError(f"training.tensor_model_parallel_size: {tp} must divide attention heads, query groups and ffn_hidden_size")
    if model["num_layers"] % pp:
        raise EuroflowError(f"training.pipeline_model_parallel_size: {pp} must divide model.num_layers {model['num_layers']}")


def estimate(
    model: dict,
    vocab_size: int,
    *,
    tp: int,
    pp: int,
    dp: int,
    micro_batch_size: int,
    seq_length: int,
    precision: str,
    distributed_optimizer: bool = False,
    recompute: bool = False,
) -> MemoryEstimate:
    """Per-GPU training memory for a ``model`` config section under TP x PP x DP (see the module)."""
    if precision not in BYTES_PER_PARAMETER:
        raise EuroflowError(f"training.precision: {precision!r} is not one of {sorted(BYTES_PER_PARAMETER)}")
    _check_layout(model, tp, pp)
    counts = parameter_count(model, vocab_size, tp)
    layers, hidden, heads = model["num_layers"], model["hidden_size"], model["num_attention_heads"]
    vocab = padded_vocab_size(vocab_size, tp)
    s, b = seq_length, micro_batch_size

    layer_params = (counts["attention"] + counts["mlp"] + counts["norms"] - hidden) / layers
    stage_layers = layers // pp
    e = ACTIVATION_BYTES[precision]
    scores = 0 if recompute else SCORE_BYTES[precision] * heads * s / hidden
    split = 4 * e + 5 * e * model["ffn_hidden_size"] / hidden + scores
    per_layer = s * b * hidden * (16 + 2 * e + split / tp)
    ids = 16 * s * b
    logits = (8 + e) * s * b * hidden + 4 * s * b * vocab / tp

    first_params = stage_layers * layer_params + vocab * hidden
    first_acts = pp * (stage_layers * per_layer + ids)
    last_params = stage_layers * layer_params + vocab * hidden + hidden
    last_acts = stage_layers * per_layer + logits
    if pp == 1:
        stages = [("only", first_params + counts["output_layer"] + hidden, first_acts + logits)]
    else:
        stages = [("first", first_params, first_acts), ("last", last_params, last_acts)]

    weight_b, grad_b, opt_b = BYTES_PER_PARAMETER[precision]
    if distributed_optimizer:
        opt_b = opt_b / dp
    candidates = []
    for name, params, acts in stages:
        shard = params / tp
        candidates.append(
            MemoryEstimate(
                weights=round(shard * weight_b),
                gradients=round(shard * grad_b),
                optimizer=round(shard * opt_b),
                activations=round(acts),
                overhead=OVERHEAD_BYTES,
                stage=name,
            )
        )
    return max(candidates, key=lambda e: e.total)


def fits(estimate: MemoryEstimate, gpu_memory_gb: float, usable_fraction: float = USABLE_FRACTION) -> bool:
    """Whether the estimate stays within ``usable_fraction`` of the device (``gpu_memory_gb`` in GiB)."""
    return estimate.total <= usable_fraction * gpu_memory_gb * GIB


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def suggest_parallelism(
    model: dict,
    vocab_size: int,
    gpus_per_node: int,
    gpu_memory_gb: float,
    nodes: int,
    micro_batch_size: int,
    seq_length: int,
    precision: str,
    global_batch_size: int,
) -> list[tuple[int, int, MemoryEstimate]]:
    """The (tp, pp, estimate) layouts that fit on ``nodes`` nodes, smallest model parallelism
    (tp*pp) first, and for equal tp*pp more tensor than pipeline parallelism first (TP stays
    within a node and has no pipeline bubble). TP is a divisor of ``gpus_per_node`` that also
    divides the attention heads, query groups and FFN size; PP divides the layers; the data-parallel
    size ``nodes*gpus_per_node/(tp*pp)`` must divide the micro batches per step."""
    heads = model["num_attention_heads"]
    groups = model.get("num_query_groups") or heads
    world = nodes * gpus_per_node
    micro_batches = global_batch_size // micro_batch_size
    found = []
    for tp in _divisors(gpus_per_node):
        if heads % tp or groups % tp or model["ffn_hidden_size"] % tp:
            continue
        for pp in _divisors(model["num_layers"]):
            if world % (tp * pp) or micro_batches % (world // (tp * pp)):
                continue
            dp = world // (tp * pp)
            result = estimate(
                model, vocab_size, tp=tp, pp=pp, dp=dp,
                micro_batch_size=micro_batch_size, seq_length=seq_length, precision=precision,
            )
            if fits(result, gpu_memory_gb):
                found.append((tp, pp, result))
    return sorted(found, key=lambda option: (option[0] * option[1], option[1]))
