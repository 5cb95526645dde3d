"""Convert the latest Megatron checkpoint to a Hugging Face ``LlamaForCausalLM`` and prove it equal.

The export is checked, not trusted: one token batch goes through the Megatron GPTModel and the
converted Llama model, and the largest absolute logits difference must stay below 1e-4 (fp32).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

from euroflow.atomic import atomic_path
from euroflow.errors import EuroflowError
from euroflow.tokenizer.train import read_meta
from euroflow.train import checkpoint, shims
from euroflow.train.model import padded_vocab_size, quiet_megatron_warnings

MAX_ABS_DIFF = 1e-4
CHECK_FILE = "export_check.json"
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer_meta.json")


def resolve_checkpoint(checkpoint_dir: str | Path) -> Path:
    """One ``iter_*`` checkpoint directory, or a checkpoint root (its newest checkpoint); a damaged
    one is refused in one line that names what is broken and the checkpoint before it."""
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise EuroflowError(f"{path}: no such checkpoint directory")
    if path.name.startswith("iter_") or (path / "metadata.json").is_file() or (path / checkpoint.MANIFEST_FILE).is_file():
        chosen = path
    else:
        saved = checkpoint.saved_iterations(path)
        if not saved:
            raise EuroflowError(f"{path}: no checkpoint (iter_* directory) in it, and not a checkpoint directory itself")
        chosen = checkpoint.iteration_dir(path, saved[0])
    problem = checkpoint.damage(chosen)
    if problem:
        older = [i for i in checkpoint.saved_iterations(chosen.parent) if chosen.name > f"iter_{i:07d}"]
        fallback = next((checkpoint.iteration_dir(chosen.parent, i) for i in older
                         if checkpoint.damage(checkpoint.iteration_dir(chosen.parent, i)) is None), None)
        hint = f"; the newest intact one before it is {fallback} (export it with --checkpoints)" if fallback else \
            "; no intact checkpoint before it"
        raise EuroflowError(f"{chosen}: damaged checkpoint, {problem}{hint}")
    return chosen


def hf_llama_config(config: dict, vocab_size: int, meta: dict):
    from transformers import LlamaConfig

    model = config["model"]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=model["hidden_size"],
        intermediate_size=model["ffn_hidden_size"],
        num_hidden_layers=model["num_layers"],
        num_attention_heads=model["num_attention_heads"],
        num_key_value_heads=model["num_query_groups"],
        head_dim=model["hidden_size"] // model["num_attention_heads"],
        hidden_act="silu",
        max_position_embeddings=model["seq_length"],
        initializer_range=model["init_method_std"],
        rms_norm_eps=model["norm_epsilon"],
        rope_parameters={"rope_type": "default", "rope_theta": float(model["rotary_base"])},
        tie_word_embeddings=model["tie_embeddings"],
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=meta["bos_id"],
        eos_token_id=meta["eos_id"],
        pad_token_id=None,
        architectures=["LlamaForCausalLM"],
        dtype="float32",
    )


def _readable_by_older_transformers(path: Path, config: dict) -> None:
    """transformers 5 writes the RoPE base only inside ``rope_parameters``; 4.x reads ``rope_theta``
    (and would load the model silently with its default, 10000: a different model) and the dtype
    as ``torch_dtype``. Write both spellings, so that llama.cpp's converter, vLLM and 4.x stacks
    read the same model."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["rope_theta"] = float(config["model"]["rotary_base"])
    data.setdefault("rope_scaling", None)
    data.setdefault("torch_dtype", data.get("dtype", "float32"))
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def megatron_to_llama(state: dict, config: dict) -> dict:
    """Rename and split a (TP=1) GPTModel state dict into Llama's parameter names."""
    model = config["model"]
    heads, groups = model["num_attention_heads"], model["num_query_groups"]
    head_dim = model["hidden_size"] // heads
    q_per_group = heads // groups
    hidden, ffn = model["hidden_size"], model["ffn_hidden_size"]
    out = {"model.embed_tokens.weight": state["embedding.word_embeddings.weight"]}
    for i in range(model["num_layers"]):
        src, dst = f"decoder.layers.{i}.", f"model.layers.{i}."
        # linear_qkv rows, per query group: [q heads of the group, k, v], each head_dim rows.
        qkv = state[src + "self_attention.linear_qkv.weight"].view(groups, q_per_group + 2, head_dim, hidden)
        out[dst + "self_attn.q_proj.weight"] = qkv[:, :q_per_group].reshape(heads * head_dim, hidden)
        out[dst + "self_attn.k_proj.weight"] = qkv[:, q_per_group].reshape(groups * head_dim, hidden)
        out[dst + "self_attn.v_proj.weight"] = qkv[:, q_per_group + 1].reshape(groups * head_dim, hidden)
        out[dst + "self_attn.o_proj.weight"] = state[src + "self_attention.linear_proj.weight"]
        # linear_fc1 = [gate; up] (SwiGLU: silu(first half) * second half)
        fc1 = state[src + "mlp.linear_fc1.weight"]
        out[dst + "mlp.gate_proj.weight"] = fc1[:ffn]
        out[dst + "mlp.up_proj.weight"] = fc1[ffn:]
        out[dst + "mlp.down_proj.weight"] = state[src + "mlp.linear_fc2.weight"]
        out[dst + "input_layernorm.weight"] = state[src + "input_layernorm.weight"]
        out[dst + "post_attention_layernorm.weight"] = state[src + "pre_mlp_layernorm.weight"]
    out["model.norm.weight"] = state["decoder.final_layernorm.weight"]
    if not model["tie_embeddings"]:
        out["lm_head.weight"] = state["output_layer.weight"]
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in out.items()}


def check_batch(config: dict, vocab_size: int, meta: dict, *, batch: int = 2) -> torch.Tensor:
    """A fixed token batch over the whole vocabulary and the full context, starting with BOS."""
    generator = torch.Generator().manual_seed(config["run"]["seed"])
    tokens = torch.randint(0, vocab_size, (batch, config["model"]["seq_length"]), generator=generator)
    tokens[:, 0] = meta["bos_id"]
    return tokens


def export_hf(config: dict, checkpoint_dir, tokenizer_dir, out_dir) -> dict:
    """Write ``out_dir`` (HF model + tokenizer files + export_check.json); returns the check result."""
    quiet_megatron_warnings()
    shims.apply()
    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    ckpt = resolve_checkpoint(checkpoint_dir)
    meta = read_meta(tokenizer_dir)
    if not (tokenizer_dir / "tokenizer.model").is_file():
        raise EuroflowError(f"{tokenizer_dir / 'tokenizer.model'}: missing; needed next to the exported model")
    vocab_size = padded_vocab_size(meta["vocab_size"], config["training"]["tensor_model_parallel_size"])

    megatron_logits, state, iteration, tokens = _megatron_side(config, ckpt, vocab_size, meta)

    from transformers import GenerationConfig, LlamaForCausalLM

    hf_config = hf_llama_config(config, vocab_size, meta)
    hf_model = LlamaForCausalLM(hf_config).to(torch.float32).eval()
    missing, unexpected = hf_model.load_state_dict(megatron_to_llama(state, config), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and hf_config.tie_word_embeddings)]
    if missing or unexpected:
        raise EuroflowError(f"{ckpt}: conversion left Llama weights unset {missing[:3]} or unused {unexpected[:3]}")
    with torch.no_grad():
        hf_logits = hf_model(input_ids=tokens).logits.float()
    max_abs_diff = (hf_logits - megatron_logits).abs().max().item()
    result = {
        "max_abs_diff": max_abs_diff,
        "tokens_checked": int(tokens.numel()),
        "passed": max_abs_diff < MAX_ABS_DIFF,
        "tolerance": MAX_ABS_DIFF,
        "checkpoint": str(ckpt),
        "iteration": iteration,
    }
    if not result["passed"]:
        raise EuroflowError(f"{ckpt}: exported Llama logits differ from Megatron by {max_abs_diff:.3g} (tolerance {MAX_ABS_DIFF})")

    with atomic_path(out_dir, directory=True) as tmp:
        hf_model.save_pretrained(tmp, safe_serialization=True)
        _readable_by_older_transformers(tmp / "config.json", config)
        GenerationConfig(bos_token_id=meta["bos_id"], eos_token_id=meta["eos_id"]).save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copy2(tokenizer_dir / name, tmp / name)
        (tmp / CHECK_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        _readable(tmp)
    return result


def _readable(directory: Path) -> None:
    """mkdtemp and safetensors create owner-only modes; give the export ordinary permissions."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)


def _megatron_side(config: dict, ckpt: Path, vocab_size: int, meta: dict):
    """Load the checkpoint into a one-process (TP=1, PP=1) GPTModel; its fp32 logits and weights."""
    from megatron.core import parallel_state

    from euroflow.train.loop import _seed_everything, single_process_group
    from euroflow.train.model import build_model

    export_config = copy.deepcopy(config)
    # one process: no model parallelism, so no sequence parallelism either; nothing to compile or recompute
    export_config["training"].update(tensor_model_parallel_size=1, pipeline_model_parallel_size=1, sequence_parallel=False,
                                     compile=False, recompute="none")
    with single_process_group():
        parallel_state.initialize_model_parallel(1, 1)
        try:
            _seed_everything(config["run"]["seed"])
            gpt = build_model(export_config, vocab_size)
            try:
                iteration = checkpoint.load_model_weights(ckpt, gpt)
            except (Exception, CheckpointException) as exc:
                raise EuroflowError(f"{ckpt}: cannot load the model weights ({checkpoint.failure_reason(exc)})") from None
            gpt = gpt.float().eval()
            device = next(gpt.parameters()).device
            tokens = check_batch(config, meta["vocab_size"], meta)
            position_ids = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
            with torch.no_grad():
                logits = gpt(tokens.to(device), position_ids.to(device), None).float().cpu()
            state = {k: v.cpu() for k, v in gpt.state_dict().items() if not k.endswith("_extra_state")}
            return logits, state, iteration, tokens
        finally:
            parallel_state.destroy_model_parallel()
