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
Transformer Models", section 4.1 and Table 2) count them, but for the layer euroflow builds
(megatron-core's local layer spec: torch RMSNorm, SwiGLU, no dropout, and the core attention of
``training.attention``), in bytes per transformer layer and micro batch::

    s*b*h * (16 + 2e + split / t)        split = A + 5e*f/h

with s the sequence length, b the micro batch, h the hidden size, f the FFN size, a the attention
heads, g the query groups, t the tensor-parallel size and e the bytes of an activation (2 bf16, 4
fp32). Replicated on every TP rank: the two RMSNorms keep an fp32 copy of their input and their fp32
normalized output (4 x 4 bytes), and the QKV and FC1 layers their input (2e). Split over TP: the
MLP's FC1 output (gate and up), SiLU output, product and one more f-wide tensor (5e*f/h), and the
attention's A:

* ``unfused`` (megatron's DotProductAttention): queries, keys and values expanded to all heads, the
  context (4e), and the s x s scores, kept as the fp32 softmax output plus its bf16 copy
  (c*a*s/h, c = 6; fp32 training: c = 4). ``A = 4e + c*a*s/h``. The paper's GPT-3 layer gives
  ``s*b*h*(10 + 24/t + 5*a*s/(h*t))`` by the same method.
* ``sdpa`` (flash or memory-efficient kernels): the QKV projection's output, which the kernel keeps
  through its values (a view of it: queries and the g groups' keys and values, not expanded,
  (1 + 2g/a)e), the rotated queries and keys ((1 + g/a)e), the context (e), and the kernel's fp32
  log-sum-exp per head and position; no scores. ``A = (3 + 3g/a)e + 4a/h``.

``recompute``: ``selective`` (the paper's section 4.2: the core attention recomputed in the backward
pass) drops the scores (unfused) or the log-sum-exp (sdpa); ``full`` keeps only each layer's input
(e*s*b*h) and, during the backward pass, one layer's activations at a time. ``sequence_parallel``
(section 4.2.2) splits the replicated part over TP as well: ``s*b*h*(16 + 2e + split)/t``. Each
layer also keeps the rotary cosines and sines it applied to queries and to keys (4*e*s*head_dim bytes,
whatever the micro batch); the causal mask (s*s bytes, once) is left out.

On CPU (fp32, torch's flash kernel for SDPA, which keeps no scores either) the forward pass's saved
tensors, counted by storage with ``torch.autograd.graph.saved_tensors_hooks``, are within a few percent
of this count for both attentions (tests/sites/test_memory.py measures it).

The formula was checked against the tensors autograd saves (``torch.autograd.graph.saved_tensors_hooks``
on euroflow's ``build_model``, bf16 and fp32) and against one NVIDIA H100 80GB (torch 2.11,
megatron-core 0.16.1, the eu-1b shape with TP = PP = 1 and one micro batch of 4096 tokens): 44.0 GiB
of saved activations measured against 43.6 GiB here (22 layers: 250 against 247.5 bytes per s*b*h
each), 22.5 GiB of weights, gradients and Adam states against 21.9, and 71.6 GiB of the device in use
at the peak against a 68.5 GiB total. Tensor parallelism was not measured (one GPU), and neither was the sdpa layer (no GPU since; on CPU,
torch's math kernel keeps the scores that the GPU kernels do not).

With pipeline parallelism under the 1F1B schedule (Narayanan et al. 2021) stage ``i`` holds
``pp - i`` micro batches in flight: the first stage ``pp`` micro batches of its ``num_layers/pp``
layers (so all ``num_layers`` layers' worth), plus their token and position ids (16*s*b bytes,
int64); the last stage one micro batch, plus the final RMSNorm's fp32 tensors (8*s*b*h, over TP with
sequence parallelism), the output layer's input (e*s*b*h) and the fp32 logits the cross entropy
works on (4*s*b*V/t bytes, V the padded vocabulary). While the loss is differentiated the last stage
also holds, for a moment, the bf16 logits and their fp32 gradient (6*s*b*V/t: 1.5 GiB for eu-1b's
vocabulary at one micro batch of 4096 tokens, 6 GiB at four).

Overhead: a fixed 3 GiB for the CUDA/ROCm context (about 0.5-1 GiB), NCCL/RCCL communication
buffers (about 1 GiB) and allocator fragmentation; :func:`fits` also leaves 10% of the device
unused, for transient buffers (fp32 copies of the attention scores while they are computed,
communication buckets) that the accounting above does not keep.
"""

from __future__ import annotations

from dataclasses import dataclass

from euroflow.errors import EuroflowError
from euroflow.model_size import padded_vocab_size, parameter_count

GIB = 2**30
ATTENTION = ("sdpa", "unfused")  # training.attention
RECOMPUTE = ("none", "selective", "full")  # training.recompute
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
    recompute: str = "none",
    attention: str = "sdpa",
    sequence_parallel: bool = False,
) -> MemoryEstimate:
    """Per-GPU training memory for a ``model`` config section under TP x PP x DP (see the module)."""
    if precision not in BYTES_PER_PARAMETER:
        raise EuroflowError(f"training.precision: {precision!r} is not one of {sorted(BYTES_PER_PARAMETER)}")
    if attention not in ATTENTION:
        raise EuroflowError(f"training.attention: {attention!r} is not one of {', '.join(ATTENTION)}")
    if recompute not in RECOMPUTE:
        raise EuroflowError(f"training.recompute: {recompute!r} is not one of {', '.join(RECOMPUTE)}")
    _check_layout(model, tp, pp)
    counts = parameter_count(model, vocab_size, tp)
    layers, hidden, heads = model["num_layers"], model["hidden_size"], model["num_attention_heads"]
    vocab = padded_vocab_size(vocab_size, tp)
    s, b = seq_length, micro_batch_size

    layer_params = (counts["attention"] + counts["mlp"] + counts["norms"] - hidden) / layers
    stage_layers = layers // pp
    e = ACTIVATION_BYTES[precision]
    groups = model.get("num_query_groups") or heads
    if attention == "unfused":  # (inputs and output, what the kernel keeps for its backward)
        core, kernel = 4 * e, SCORE_BYTES[precision] * heads * s / hidden
    else:
        core, kernel = (3 + 3 * groups / heads) * e, 4 * heads / hidden
    sbh = s * b * hidden
    sp = tp if sequence_parallel else 1  # what sequence parallelism splits the replicated tensors by
    replicated = (16 + 2 * e) / sp
    mlp = 5 * e * model["ffn_hidden_size"] / hidden
    rotary = 4 * e * s * (hidden // heads)  # cos and sin for queries and keys; TP splits the heads, not these
    layer = sbh * (replicated + (core + kernel + mlp) / tp) + rotary
    if recompute == "full":  # each layer's input, and one layer recomputed at a time in the backward pass
        per_layer, in_backward = sbh * e / sp, layer
    elif recompute == "selective":  # the core attention recomputed: its kernel's tensors are not kept
        per_layer, in_backward = layer - sbh * kernel / tp, 0
    else:
        per_layer, in_backward = layer, 0
    ids = 16 * s * b
    logits = (8 / sp + e) * sbh + (4 + 6) * s * b * vocab / tp

    first_params = stage_layers * layer_params + vocab * hidden
    first_acts = pp * (stage_layers * per_layer + ids) + in_backward
    last_params = stage_layers * layer_params + vocab * hidden + hidden
    last_acts = stage_layers * per_layer + in_backward + logits
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
    *,
    distributed_optimizer: bool = False,
    recompute: str = "none",
    attention: str = "sdpa",
    sequence_parallel: bool = False,
) -> list[tuple[int, int, MemoryEstimate]]:
    """The (tp, pp, estimate) layouts that fit on ``nodes`` nodes, smallest model parallelism
    (tp*pp) first, and for equal tp*pp more tensor than pipeline parallelism first (TP stays
    within a node and has no pipeline bubble). TP is a divisor of ``gpus_per_node`` that also
    divides the attention heads, query groups and FFN size; PP divides the layers; the data-parallel
    size ``nodes*gpus_per_node/(tp*pp)`` must divide the micro batches per step. The keyword
    settings are the run's (``training.*``); sequence parallelism applies to the layouts with TP > 1."""
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
                distributed_optimizer=distributed_optimizer, recompute=recompute, attention=attention,
                sequence_parallel=sequence_parallel and tp > 1,
            )
            if fits(result, gpu_memory_gb):
                found.append((tp, pp, result))
    return sorted(found, key=lambda option: (option[0] * option[1], option[1]))
