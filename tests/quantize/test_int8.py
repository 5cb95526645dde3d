import pytest
import torch

from euroflow.errors import EuroflowError
from euroflow.evaluate.bpb import bits_per_byte
from euroflow.evaluate.model import load_model, load_tokenizer
from euroflow.quantize.cli import main as quantize_main
from euroflow.quantize.int8 import load_int8


@pytest.fixture(scope="module")
def int8_file(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "tiny-int8.pt"
    assert quantize_main(["int8", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    return out


def test_linear_weights_are_int8_and_file_is_smaller(int8_file, tiny_model_dir):
    model, info = load_int8(int8_file)
    assert "torchao" in info["method"]
    layer = model.model.layers[0]
    for linear in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.mlp.down_proj, model.lm_head):
        assert type(linear.weight).__name__ == "Int8Tensor"
        assert linear.weight.qdata.dtype == torch.int8
    assert model.model.norm.weight.dtype == torch.float32
    assert int8_file.stat().st_size < 0.6 * (tiny_model_dir / "model.safetensors").stat().st_size


def test_int8_bits_per_byte_close_to_fp32(int8_file, tiny_model_dir, data_root):
    from euroflow.data.flores import load_flores

    sentences = load_flores(data_root, "de", ["test"])[:24]
    tokenizer = load_tokenizer(tiny_model_dir)
    fp32 = bits_per_byte(load_model(tiny_model_dir), tokenizer, sentences)["bpb"]
    int8 = bits_per_byte(load_int8(int8_file)[0], tokenizer, sentences)["bpb"]
    assert int8 != fp32  # it is really a different (quantized) model
    assert abs(int8 - fp32) < 0.01 * fp32


def test_loader_rejects_other_files(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(EuroflowError, match="format 'something-else'"):
        load_int8(other)
    with pytest.raises(EuroflowError, match="not found"):
        load_int8(tmp_path / "missing.pt")
