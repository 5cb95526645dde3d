"""Megatron checkpoint -> Hugging Face Llama: logits match, the directory loads, the model is the trained one."""

import json
import math

import pytest
import torch

import train_corpus as corpus
from euroflow.errors import EuroflowError
from euroflow.train.cli import main as train_main
from euroflow.train.export_hf import export_hf


@pytest.fixture(scope="module")
def exported(tmp_path_factory, reference_run, train_inputs):
    out = tmp_path_factory.mktemp("hf") / "model"
    result = export_hf(corpus.tiny_config(), reference_run["out"] / "checkpoints", train_inputs["tokenizer"], out)
    return out, result


def test_export_logits_match_megatron(exported):
    out, result = exported
    check = json.loads((out / "export_check.json").read_text())
    assert check == result
    assert check["passed"] and check["max_abs_diff"] < 1e-4
    assert check["tokens_checked"] == 2 * 64 and check["iteration"] == 40
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.model", "tokenizer_meta.json"):
        assert (out / name).is_file(), name


def test_exported_model_is_the_trained_llama(exported, data_root, reference_run):
    import sentencepiece as spm
    from transformers import LlamaForCausalLM

    out, _ = exported
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (2, 64, 176)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (4, 2, 1000)
    assert not cfg.tie_word_embeddings and cfg.bos_token_id == 1 and cfg.eos_token_id == 2
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    text = " ".join(corpus.ntrex_documents(data_root, "de")[:3])
    ids = torch.tensor([[1] + sp.encode(text)[:63]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    # far below a uniform guess (ln 1000 = 6.9) and near what training reached
    assert loss < math.log(1000) - 0.5
    assert abs(loss - reference_run["log"][-1]["valid_loss"]) < 0.6


def test_export_cli_and_missing_checkpoint(tmp_path, reference_run, train_inputs, capsys):
    import yaml

    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(corpus.tiny_config()))
    args = ["export-hf", "--config", str(config_path), "--tokenizer", str(train_inputs["tokenizer"])]
    assert train_main(args + ["--checkpoints", str(tmp_path / "nothing"), "--out", str(tmp_path / "hf")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"euroflow: error: {tmp_path / 'nothing'}: no such checkpoint directory"
    assert not (tmp_path / "hf").exists()
    ckpt = reference_run["out"] / "checkpoints" / "iter_0000020"
    assert train_main(args + ["--checkpoints", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "export_check.json").read_text())["iteration"] == 20


def test_export_refuses_a_checkpoint_of_another_shape(tmp_path, reference_run, train_inputs):
    config = corpus.tiny_config()
    config["model"]["hidden_size"] = 32
    with pytest.raises(EuroflowError, match="iter_0000040"):
        export_hf(config, reference_run["out"] / "checkpoints", train_inputs["tokenizer"], tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_the_rope_base_is_written_for_transformers_4_and_5(exported, tmp_path):
    """transformers 4.x reads `rope_theta` (default 10000): without it a 500k-base model loads as another model."""
    from transformers import LlamaConfig

    from euroflow.train.export_hf import _readable_by_older_transformers

    out, _ = exported
    written = json.loads((out / "config.json").read_text())
    assert written["rope_theta"] == written["rope_parameters"]["rope_theta"] == 10000.0
    assert written["torch_dtype"] == "float32"
    eu_like = tmp_path / "config.json"
    eu_like.write_text(json.dumps({**written, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}))
    config = corpus.tiny_config()
    config["model"]["rotary_base"] = 500000
    _readable_by_older_transformers(eu_like, config)
    data = json.loads(eu_like.read_text())
    assert data["rope_theta"] == data["rope_parameters"]["rope_theta"] == 500000.0 and data["rope_scaling"] is None
    assert LlamaConfig.from_pretrained(tmp_path).rope_parameters["rope_theta"] == 500000.0
