"""Read a llama GGUF back into a Hugging Face ``LlamaForCausalLM`` (weights dequantized to float32).

The model is built from the GGUF alone (config from its metadata), so measuring it measures the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from euroflow.errors import EuroflowError
from euroflow.quantize.gguf_export import unpermute

_PER_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_FIXED = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def gguf_to_hf_name(name: str) -> str:
    if name in _FIXED:
        return _FIXED[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _PER_LAYER:
        return f"model.layers.{parts[1]}.{_PER_LAYER[parts[2]]}"
    raise EuroflowError(f"GGUF tensor {name!r}: not a llama tensor this reader knows")


@dataclass
class GgufContents:
    path: Path
    metadata: dict
    tensor_types: dict[str, str]
    tensors: dict[str, np.ndarray]  # HF names, HF orientation, float32, Q/K un-permuted


def read_metadata(reader) -> dict:
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        metadata[key] = field.contents()
    return metadata


def read_gguf(path: str | Path) -> GgufContents:
    import gguf

    path = Path(path)
    if not path.is_file():
        raise EuroflowError(f"{path}: GGUF file not found")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise EuroflowError(f"{path}: not a readable GGUF file ({exc})") from None
    metadata = read_metadata(reader)
    if metadata.get("general.architecture") != "llama":
        raise EuroflowError(f"{path}: general.architecture={metadata.get('general.architecture')!r}; expected 'llama'")
    n_head = int(metadata["llama.attention.head_count"])
    n_head_kv = int(metadata.get("llama.attention.head_count_kv", n_head))
    tensors: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for tensor in reader.tensors:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        # GGUF shapes are ggml's (fastest dimension first); numpy data is already row-major (out, in)
        array = array.reshape([int(d) for d in reversed(tensor.shape.tolist())])
        if tensor.name.endswith("attn_q.weight"):
            array = unpermute(array, n_head, n_head)
        elif tensor.name.endswith("attn_k.weight"):
            array = unpermute(array, n_head, n_head_kv)
        tensors[gguf_to_hf_name(tensor.name)] = array
        types[tensor.name] = tensor.tensor_type.name
    return GgufContents(path=path, metadata=metadata, tensor_types=types, tensors=tensors)


def hf_config(metadata: dict, tied: bool):
    from transformers import LlamaConfig

    def get(key: str):
        full = f"llama.{key}"
        if full not in metadata:
            raise EuroflowError(f"GGUF metadata: missing {full}")
        return metadata[full]

    n_head = int(get("attention.head_count"))
    embedding = int(get("embedding_length"))
    return LlamaConfig(
        vocab_size=int(metadata.get("llama.vocab_size", len(metadata["tokenizer.ggml.tokens"]))),
        hidden_size=embedding,
        intermediate_size=int(get("feed_forward_length")),
        num_hidden_layers=int(get("block_count")),
        num_attention_heads=n_head,
        num_key_value_heads=int(metadata.get("llama.attention.head_count_kv", n_head)),
        head_dim=int(metadata.get("llama.attention.key_length", embedding // n_head)),
        max_position_embeddings=int(get("context_length")),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_parameters={"rope_type": "default", "rope_theta": float(metadata.get("llama.rope.freq_base", 10000.0))},
        bos_token_id=int(metadata.get("tokenizer.ggml.bos_token_id", 1)),
        eos_token_id=int(metadata.get("tokenizer.ggml.eos_token_id", 2)),
        tie_word_embeddings=tied,
        attention_bias=False,
        mlp_bias=False,
    )


def load_gguf_as_hf(path: str | Path):
    """``(model, contents)``: a float32 ``LlamaForCausalLM`` holding the GGUF's dequantized weights."""
    import torch

    from euroflow.evaluate.model import quiet_torchao

    quiet_torchao()
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)  # the random init is overwritten; seeded only so nothing varies run to run
    contents = read_gguf(path)
    tied = "lm_head.weight" not in contents.tensors
    config = hf_config(contents.metadata, tied)
    model = LlamaForCausalLM(config)
    state = {name: torch.from_numpy(array) for name, array in contents.tensors.items()}
    if tied:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    expected = {k for k in model.state_dict() if not k.endswith("rotary_emb.inv_freq")}
    missing = sorted(expected - set(state))
    if missing:
        raise EuroflowError(f"{path}: GGUF lacks tensors for {missing[:3]}{'...' if len(missing) > 3 else ''}")
    model.load_state_dict(state, strict=False)
    model.float().eval()
    return model, contents
