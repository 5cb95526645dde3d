"""Hugging Face Llama directory -> GGUF file (F16, Q8_0 or Q4_0) that llama.cpp loads.

Follows llama.cpp's ``convert_hf_to_gguf.py`` for ``LlamaForCausalLM`` with a SentencePiece vocab:
``llama`` architecture keys, llama.cpp tensor names, the Q/K row permutation (HF rotates the two
halves of each head; llama.cpp's ``llama`` RoPE rotates adjacent pairs), 1-D tensors (norms) in F32,
and the tokenizer as ``tokenizer.ggml.model = "llama"`` with tokens, scores and token types (``<0xNN>``
pieces are BYTE). A tensor whose rows do not split into quantization blocks falls back to F16, as in
convert_hf_to_gguf. Q4_0 keeps the output projection in Q8_0 (llama-quantize likewise keeps it at
higher precision; the Python ``gguf`` package has no K-quant quantizer for its usual Q6_K).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from euroflow.atomic import atomic_path, write_text
from euroflow.errors import EuroflowError

QTYPES = ("F16", "Q8_0", "Q4_0")
SPIECE_SPACE = "\u2581"


def hf_to_gguf_name(name: str) -> str:
    """llama.cpp's tensor name for a ``LlamaForCausalLM`` state-dict key."""
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if name in fixed:
        return fixed[name]
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    parts = name.split(".", 3)
    if len(parts) == 4 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdigit() and parts[3] in per_layer:
        return f"blk.{parts[2]}.{per_layer[parts[3]]}"
    raise EuroflowError(f"tensor {name!r}: no llama.cpp name (only plain Llama without biases is supported)")


def permute(weight: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf's ``LlamaModel.permute`` for q_proj (n_head) and k_proj (n_head_kv)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def unpermute(weight: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Inverse of :func:`permute`."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weight.reshape(n_head, weight.shape[0] // n_head // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def sentencepiece_vocab(model_dir: Path, vocab_size: int) -> dict:
    """Tokens, scores and types as convert_hf_to_gguf's ``_create_vocab_sentencepiece`` builds them."""
    import gguf
    import sentencepiece as spm

    path = model_dir / "tokenizer.model"
    if not path.is_file():
        raise EuroflowError(f"{path}: missing; GGUF export needs the SentencePiece tokenizer.model")
    sp = spm.SentencePieceProcessor()
    sp.Load(str(path))
    n_pieces = sp.get_piece_size()
    if n_pieces > vocab_size:
        raise EuroflowError(f"{path}: {n_pieces} pieces but the model's vocab_size is {vocab_size}")
    tokens = [f"[PAD{i}]".encode("utf-8") for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for token_id in range(n_pieces):
        kind = gguf.TokenType.NORMAL
        if sp.IsUnknown(token_id):
            kind = gguf.TokenType.UNKNOWN
        elif sp.IsControl(token_id):
            kind = gguf.TokenType.CONTROL
        elif sp.IsUnused(token_id):
            kind = gguf.TokenType.UNUSED
        elif sp.IsByte(token_id):
            kind = gguf.TokenType.BYTE
        tokens[token_id] = sp.IdToPiece(token_id).encode("utf-8")
        scores[token_id] = float(sp.GetScore(token_id))
        types[token_id] = int(kind)
    # SentencePiece's add_dummy_prefix shows as a leading "▁" on the first piece of a bare word.
    add_space_prefix = sp.EncodeAsPieces("a")[0].startswith(SPIECE_SPACE)
    return {
        "tokens": tokens,
        "scores": scores,
        "types": types,
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id(),
        "add_space_prefix": add_space_prefix,
        "pieces": n_pieces,
    }


def _hparams(config) -> dict:
    # transformers 5 keeps RoPE settings in rope_parameters (rope_scaling is an alias of it)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type != "default":
        raise EuroflowError(f"config.json: rope_type {rope_type!r} not supported; only plain RoPE ('default')")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise EuroflowError(f"config.json: hidden_act {config.hidden_act!r}; llama.cpp's llama needs 'silu'")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise EuroflowError("config.json: attention_bias/mlp_bias are true; only Llama without biases is supported")
    n_head = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    rope_theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    rope_theta = float(rope_theta if rope_theta is not None else getattr(config, "rope_theta", 10000.0))
    return {
        "context_length": int(config.max_position_embeddings),
        "embedding_length": int(config.hidden_size),
        "block_count": int(config.num_hidden_layers),
        "feed_forward_length": int(config.intermediate_size),
        "head_count": n_head,
        "head_count_kv": int(config.num_key_value_heads or n_head),
        "head_dim": head_dim,
        "rope_freq_base": rope_theta,
        "rms_eps": float(config.rms_norm_eps),
        "vocab_size": int(config.vocab_size),
        "tied": bool(getattr(config, "tie_word_embeddings", False)),
    }


def _tensor_qtype(gguf_name: str, array: np.ndarray, qtype: str, tied: bool):
    from gguf import GGMLQuantizationType as Q

    if array.ndim == 1 or gguf_name.endswith("_norm.weight"):
        return Q.F32
    if qtype == "F16":
        return Q.F16
    is_output = gguf_name == "output.weight" or (tied and gguf_name == "token_embd.weight")
    if qtype == "Q4_0" and not is_output:
        return Q.Q4_0
    return Q.Q8_0


def export_gguf(model_dir: str | Path, out: str | Path, qtype: str, *, name: str | None = None) -> dict:
    """Write ``out`` (atomically); returns a summary: hparams, tensor types, file size."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    from euroflow.evaluate.model import load_model

    if qtype not in QTYPES:
        raise EuroflowError(f"--type {qtype!r}: must be one of {', '.join(QTYPES)}")
    model_dir = Path(model_dir)
    model = load_model(model_dir, "cpu")
    hp = _hparams(model.config)
    vocab = sentencepiece_vocab(model_dir, hp["vocab_size"])
    file_type = {
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[qtype]

    state = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    if hp["tied"]:
        state.pop("lm_head.weight", None)  # llama.cpp uses token_embd when output is absent

    tensor_types: dict[str, str] = {}
    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name(name or model_dir.name)
        writer.add_context_length(hp["context_length"])
        writer.add_embedding_length(hp["embedding_length"])
        writer.add_block_count(hp["block_count"])
        writer.add_feed_forward_length(hp["feed_forward_length"])
        writer.add_head_count(hp["head_count"])
        writer.add_head_count_kv(hp["head_count_kv"])
        writer.add_rope_freq_base(hp["rope_freq_base"])
        writer.add_layer_norm_rms_eps(hp["rms_eps"])
        writer.add_vocab_size(hp["vocab_size"])
        writer.add_rope_dimension_count(hp["head_dim"])
        if hp["head_dim"] != hp["embedding_length"] // hp["head_count"]:
            writer.add_key_length(hp["head_dim"])
            writer.add_value_length(hp["head_dim"])
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(vocab["tokens"])
        writer.add_token_scores(vocab["scores"])
        writer.add_token_types(vocab["types"])
        writer.add_bos_token_id(vocab["bos_id"])
        writer.add_eos_token_id(vocab["eos_id"])
        writer.add_unk_token_id(vocab["unk_id"])
        if vocab["pad_id"] >= 0:
            writer.add_pad_token_id(vocab["pad_id"])
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(vocab["add_space_prefix"])

        for hf_name, array in state.items():
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            gguf_name = hf_to_gguf_name(hf_name)
            if hf_name.endswith("q_proj.weight"):
                array = permute(array, hp["head_count"], hp["head_count"])
            elif hf_name.endswith("k_proj.weight"):
                array = permute(array, hp["head_count"], hp["head_count_kv"])
            target = _tensor_qtype(gguf_name, array, qtype, hp["tied"])
            try:
                data = gguf.quants.quantize(np.ascontiguousarray(array), target)
            except gguf.quants.QuantError:
                target = Q.F16  # rows not a multiple of the block size
                data = gguf.quants.quantize(np.ascontiguousarray(array), target)
            writer.add_tensor(gguf_name, data, raw_dtype=target if target not in (Q.F32, Q.F16) else None)
            tensor_types[gguf_name] = target.name

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return {
        "path": str(out),
        "type": qtype,
        "file_size": Path(out).stat().st_size,
        "hparams": hp,
        "vocab_pieces": vocab["pieces"],
        "tensor_types": tensor_types,
    }


def write_summary(summary: dict, out: str | Path) -> None:
    write_text(out, json.dumps(summary, indent=2) + "\n")
