import json

import numpy as np
import pytest
import sentencepiece as spm
import torch

from euroflow.errors import EuroflowError
from euroflow.evaluate.model import load_model
from euroflow.quantize.cli import main as quantize_main
from euroflow.quantize.gguf_export import export_gguf, permute, unpermute
from euroflow.quantize.gguf_read import load_gguf_as_hf, read_gguf

LLAMA_TENSORS = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    files = {}
    for qtype in ("F16", "Q8_0", "Q4_0"):
        files[qtype] = out / f"tiny-{qtype}.gguf"
        assert quantize_main(["gguf", "--model", str(tiny_model_dir), "--type", qtype, "--out", str(files[qtype]),
                              "--summary", str(out / f"tiny-{qtype}.json")]) == 0
    return files


def test_permutation_pairs_hf_halves_into_llama_cpp_adjacent_rows():
    # one head of dim 8: HF rotates (i, i + 4), llama.cpp's llama RoPE rotates (2i, 2i + 1)
    rows = np.arange(8, dtype=np.float32)[:, None].repeat(3, axis=1)
    assert permute(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    weight = np.random.default_rng(0).standard_normal((4 * 16, 64)).astype(np.float32)
    assert np.array_equal(unpermute(permute(weight, 4, 4), 4, 4), weight)
    k = weight[:32]
    assert np.array_equal(unpermute(permute(k, 4, 2), 4, 2), k)  # GQA: K permuted per KV head
    assert not np.array_equal(permute(k, 4, 2), permute(k, 4, 4))


def test_metadata_and_tokenizer_fields(exported, tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model_dir / "tokenizer.model"))
    meta = read_gguf(exported["F16"]).metadata
    assert meta["general.architecture"] == "llama"
    assert meta["general.file_type"] == 1  # MOSTLY_F16
    assert read_gguf(exported["Q8_0"]).metadata["general.file_type"] == 7
    expected = {
        "llama.context_length": config["max_position_embeddings"],
        "llama.embedding_length": config["hidden_size"],
        "llama.block_count": config["num_hidden_layers"],
        "llama.feed_forward_length": config["intermediate_size"],
        "llama.attention.head_count": config["num_attention_heads"],
        "llama.attention.head_count_kv": config["num_key_value_heads"],
        "llama.rope.dimension_count": config["hidden_size"] // config["num_attention_heads"],
        "llama.vocab_size": config["vocab_size"],
    }
    assert {k: meta[k] for k in expected} == expected
    assert meta["llama.rope.freq_base"] == pytest.approx(config["rope_parameters"]["rope_theta"])
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config["rms_norm_eps"])

    assert meta["tokenizer.ggml.model"] == "llama"
    tokens = meta["tokenizer.ggml.tokens"]
    assert tokens == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert meta["tokenizer.ggml.scores"] == pytest.approx([sp.get_score(i) for i in range(sp.get_piece_size())])
    types = meta["tokenizer.ggml.token_type"]
    assert types[0] == 2 and types[1] == 3 and types[2] == 3  # UNKNOWN, CONTROL <s>, CONTROL </s>
    assert [tokens[i] for i, t in enumerate(types) if t == 6] == [f"<0x{b:02X}>" for b in range(256)]  # BYTE
    assert set(types[259:]) == {1}  # NORMAL
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"], meta["tokenizer.ggml.unknown_token_id"]) == (1, 2, 0)
    assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.add_eos_token"] is False
    assert meta["tokenizer.ggml.add_space_prefix"] is True


def test_tensor_names_and_types(exported, tiny_model_dir):
    n_layers = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    names = {"token_embd.weight", "output_norm.weight", "output.weight"}
    names |= {f"blk.{i}.{t}.weight" for i in range(n_layers) for t in LLAMA_TENSORS}
    for qtype, main_type in (("F16", "F16"), ("Q8_0", "Q8_0"), ("Q4_0", "Q4_0")):
        types = read_gguf(exported[qtype]).tensor_types
        assert set(types) == names
        for name, kind in types.items():
            if name.endswith("norm.weight"):
                assert kind == "F32"
            elif qtype == "Q4_0" and name == "output.weight":
                assert kind == "Q8_0"
            else:
                assert kind == main_type, name
    sizes = {q: p.stat().st_size for q, p in exported.items()}
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q4_0"]


@pytest.mark.parametrize("qtype,rel_tol", [("F16", 1e-3), ("Q8_0", 1.0 / 127), ("Q4_0", 1.0 / 7)])
def test_round_trip_weights(exported, tiny_model_dir, qtype, rel_tol):
    reference = load_model(tiny_model_dir).state_dict()
    tensors = read_gguf(exported[qtype]).tensors
    assert set(tensors) == {k for k in reference if not k.endswith("inv_freq")}
    for name, array in tensors.items():
        want = reference[name].numpy()
        assert array.shape == want.shape, name
        # block quantization: the error of each value is at most a fraction of its block's largest value
        assert np.abs(array - want).max() <= rel_tol * np.abs(want).max() + 1e-7, name
        if name.endswith("norm.weight"):
            assert np.array_equal(array, want)


def test_read_back_model_gives_close_logits(exported, tiny_model_dir):
    reference = load_model(tiny_model_dir)
    ids = torch.tensor([[1, 300, 301, 350, 400, 420, 2, 500]])
    with torch.no_grad():
        want = reference(ids).logits
        for qtype, tol in (("F16", 2e-2), ("Q8_0", 0.2)):
            model, _ = load_gguf_as_hf(exported[qtype])
            got = model(ids).logits
            assert (got - want).abs().max() < tol * want.std(), qtype
            assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_tied_embeddings_write_no_output_tensor(tiny_tied_model_dir, tmp_path):
    out = tmp_path / "tied.gguf"
    export_gguf(tiny_tied_model_dir, out, "Q8_0")
    contents = read_gguf(out)
    assert "output.weight" not in contents.tensor_types
    model, _ = load_gguf_as_hf(out)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    reference = load_model(tiny_tied_model_dir)
    ids = torch.tensor([[1, 300, 301, 350]])
    with torch.no_grad():
        assert (model(ids).logits - reference(ids).logits).abs().max() < 0.2 * reference(ids).logits.std()


def test_bad_inputs_are_one_line_errors_and_leave_no_file(tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit):
        quantize_main(["gguf", "--model", str(tiny_model_dir), "--type", "Q5_K", "--out", str(tmp_path / "x.gguf")])
    with pytest.raises(EuroflowError, match="config.json: missing"):
        export_gguf(tmp_path, tmp_path / "y.gguf", "F16")
    assert list(tmp_path.iterdir()) == []
