"""Pretraining throughput: euroflow's training step against Hugging Face LlamaForCausalLM + torch.compile,
same shape, batch and sequence, in one process, taking turns.

    python benchmarks/train_throughput.py [--tiny] [--steps 10] [--warmup 3] [--micro-batch 8]
                                          [--global-batch 8] [--no-compile] [--attention sdpa]

euroflow's step is the trainer's own (``euroflow.train.loop._Trainer``: megatron-core GPTModel with the run
config's layer spec, DDP wrapper, megatron's Adam with clipping, the LR scheduler, the forward-backward
schedule over the micro batches of a global batch); only the data loader is replaced by random tokens. The
peer is LlamaForCausalLM (transformers) of the same shape, ``torch.compile``d, with fused AdamW (fused where
the device has it), bf16 autocast over fp32 weights on a GPU (fp32 on CPU), gradient accumulation over the
same micro batches and the same clipping. After ``--warmup`` steps each, the two take turns for ``--steps``
steps each; the median step counts.

MFU: (6*N + 12*L*H*S) FLOPs per token (``euroflow.sites.plan.flops_per_token``: N the parameters in matrix
multiplications) times tokens/s over the device's dense bf16 peak (a table of the GPUs of the four sites and
the H200); on CPU there is no peak and no MFU, and the ratio only proves the plumbing.

Default shape: the 1.37 B reference (24 layers, hidden 2048, 16 heads, FFN 5632, vocabulary 32768, sequence
2048) at micro batch 8, bf16, on a GPU. ``--tiny``: 2 layers, hidden 256, 4 heads, FFN 704, vocabulary
4096, sequence 256, micro batch 4, fp32, on CPU.

Prints a table, then one line of JSON: device, shape, euroflow_tokens_per_s, hf_compile_tokens_per_s,
euroflow_mfu, hf_compile_mfu, ratio (euroflow / peer tokens per second), euroflow_peak_gib, hf_peak_gib.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# dense bf16 tensor peak, TFLOP/s, no sparsity (datasheets; the sites' files give the same for theirs)
PEAK_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "MI250X": 191.5, "MI300X": 1307}

REFERENCE = {"num_layers": 24, "hidden_size": 2048, "ffn_hidden_size": 5632, "num_attention_heads": 16,
             "num_query_groups": 16, "seq_length": 2048, "vocab": 32768, "micro_batch": 8}
TINY = {"num_layers": 2, "hidden_size": 256, "ffn_hidden_size": 704, "num_attention_heads": 4,
        "num_query_groups": 4, "seq_length": 256, "vocab": 4096, "micro_batch": 4}


class RandomTokens:
    """Megatron GPTDataset's samples (tokens, labels, loss_mask, position_ids) of random tokens."""

    def __init__(self, vocab: int, seq: int, seed: int = 0):
        self.vocab, self.seq, self.seed = vocab, seq, seed

    def __len__(self):
        return 1 << 40

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed + index)
        text = torch.randint(0, self.vocab, (self.seq + 1,), generator=generator)
        return {"tokens": text[:-1], "labels": text[1:], "loss_mask": torch.ones(self.seq),
                "position_ids": torch.arange(self.seq)}


def run_config(shape: dict, args, bf16: bool) -> dict:
    from euroflow.config import validate

    model = {k: shape[k] for k in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                                   "num_query_groups", "seq_length")}
    config = {
        "run": {"name": "train-throughput", "seed": 1234},
        "languages": ["en"],
        "data": {"source": {"kind": "ntrex-demo"}},
        "sampling": {"policy": "temperature", "alpha": 0.3},
        "tokenizer": {"vocab_size": shape["vocab"]},
        "model": model,
        "training": {"train_steps": 10**6, "micro_batch_size": shape["micro_batch"], "global_batch_size": args.global_batch or shape["micro_batch"],
                     "lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 10, "precision": "bf16" if bf16 else "fp32",
                     "attention": args.attention},
        "evaluation": {},
        "quantization": {},
    }
    return validate(config, "<train_throughput>")


def euroflow_stepper(config: dict, work: Path):
    """(step function, parameter count) of the trainer on one process."""
    from megatron.core import parallel_state

    from euroflow.train import loop, shims
    from euroflow.train.model import quiet_megatron_warnings

    quiet_megatron_warnings()
    shims.apply()
    if torch.cuda.is_available():  # the process group training makes of one GPU
        import os

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(loop._free_port()))
        torch.cuda.set_device(0)
        torch.distributed.init_process_group("nccl", rank=0, world_size=1)
    else:
        global _GROUP  # held: a collected context manager would destroy the group
        _GROUP = loop.single_process_group()
        _GROUP.__enter__()
    parallel_state.initialize_model_parallel(1, 1)
    trainer = loop._Trainer(config, work / "blend.json", work, work / "out", dp=1)
    vocab = config["tokenizer"]["vocab_size"]
    trainer._build(SimpleNamespace(train=RandomTokens(vocab, config["model"]["seq_length"]), valid=None,
                                   tokenizer=SimpleNamespace(vocab_size=vocab)))
    consumed = [0]

    def step():
        entry = trainer._train_step(consumed[0])
        consumed[0] += trainer.global_batch_size
        return entry["loss"]

    return step, sum(p.numel() for p in trainer.model.parameters())


def hf_stepper(config: dict, device: torch.device, bf16: bool, compile_model: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    model, training = config["model"], config["training"]
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=config["tokenizer"]["vocab_size"], hidden_size=model["hidden_size"],
        intermediate_size=model["ffn_hidden_size"], num_hidden_layers=model["num_layers"],
        num_attention_heads=model["num_attention_heads"], num_key_value_heads=model["num_query_groups"],
        max_position_embeddings=model["seq_length"], rope_theta=model["rotary_base"], rms_norm_eps=model["norm_epsilon"],
        tie_word_embeddings=False, attn_implementation="sdpa",
    )).to(device)
    optimizer = torch.optim.AdamW(llama.parameters(), lr=training["lr"], betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=device.type == "cuda")
    forward = torch.compile(llama) if compile_model else llama
    data = RandomTokens(config["tokenizer"]["vocab_size"], model["seq_length"], seed=1)
    mbs, gbs = training["micro_batch_size"], training["global_batch_size"]
    consumed = [0]

    def step():
        total = 0.0
        for micro in range(gbs // mbs):
            start = consumed[0] + micro * mbs
            tokens = torch.stack([data[i]["tokens"] for i in range(start, start + mbs)]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = forward(input_ids=tokens, labels=tokens).loss / (gbs // mbs)
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(llama.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        consumed[0] += gbs
        return total

    return step, sum(p.numel() for p in llama.parameters())


def timed(step, device) -> tuple[float, float | None]:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter() - tic, torch.cuda.max_memory_allocated() / 2**30
    return time.perf_counter() - tic, None


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the CPU shape (proves the plumbing)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--micro-batch", type=int)
    parser.add_argument("--global-batch", type=int, help="default: one micro batch")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "unfused"])
    parser.add_argument("--no-compile", action="store_true", help="the peer without torch.compile")
    args = parser.parse_args()

    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    shape = dict(TINY if args.tiny or not cuda else REFERENCE)
    if args.micro_batch:
        shape["micro_batch"] = args.micro_batch
    config = run_config(shape, args, bf16=cuda)
    from euroflow.sites.plan import flops_per_token

    flops = flops_per_token(config["model"], shape["vocab"])
    tokens_per_step = config["training"]["global_batch_size"] * shape["seq_length"]
    name, peak = device_peak(device)

    with tempfile.TemporaryDirectory(prefix="train-throughput-") as work:
        ours, our_params = euroflow_stepper(config, Path(work))
        theirs, their_params = hf_stepper(config, device, bf16=cuda, compile_model=not args.no_compile)
        assert our_params == their_params, (our_params, their_params)  # the same model, counted twice
        for _ in range(args.warmup):
            ours()
            theirs()
        times = {"euroflow": [], "hf_compile": []}
        peaks = {"euroflow": None, "hf_compile": None}
        for _ in range(args.steps):
            for key, step in (("euroflow", ours), ("hf_compile", theirs)):
                seconds, peak_gib = timed(step, device)
                times[key].append(seconds)
                if peak_gib is not None:
                    peaks[key] = max(peaks[key] or 0.0, peak_gib)

    rows = {}
    for key, values in times.items():
        rate = tokens_per_step / statistics.median(values)
        rows[key] = {"tokens_per_s": rate, "mfu": rate * flops / (peak * 1e12) if peak else None, "peak_gib": peaks[key]}
    print(f"{'':12} {'tokens/s':>12} {'MFU':>7} {'peak GiB':>9}   ({name}, {our_params / 1e9:.3f} B parameters, "
          f"micro batch {shape['micro_batch']} x {shape['seq_length']}, median of {args.steps})")
    for key, row in rows.items():
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
        memory = f"{row['peak_gib']:.1f}" if row["peak_gib"] is not None else "-"
        print(f"{key:12} {row['tokens_per_s']:>12,.0f} {mfu:>7} {memory:>9}")
    shape_text = (f"L{shape['num_layers']} H{shape['hidden_size']} heads{shape['num_attention_heads']} FFN{shape['ffn_hidden_size']} "
                  f"V{shape['vocab']} S{shape['seq_length']} mbs{shape['micro_batch']} {config['training']['precision']}")
    print(json.dumps({
        "device": name, "shape": shape_text, "attention": args.attention, "compile": not args.no_compile,
        "euroflow_tokens_per_s": round(rows["euroflow"]["tokens_per_s"], 1),
        "hf_compile_tokens_per_s": round(rows["hf_compile"]["tokens_per_s"], 1),
        "euroflow_mfu": rows["euroflow"]["mfu"], "hf_compile_mfu": rows["hf_compile"]["mfu"],
        "ratio": round(rows["euroflow"]["tokens_per_s"] / rows["hf_compile"]["tokens_per_s"], 3),
        "euroflow_peak_gib": peaks["euroflow"], "hf_peak_gib": peaks["hf_compile"],
    }))


if __name__ == "__main__":
    main()
