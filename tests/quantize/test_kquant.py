"""K-quants by llama.cpp's own quantizer and the importance matrix that guides them, on a model whose
rows are multiples of 256 (K-quant blocks), loaded and run in real llama.cpp."""

import json
import os

import numpy as np
import pytest
import torch

from euroflow.errors import EuroflowError
from euroflow.evaluate.model import load_model
from euroflow.quantize.cli import main as quantize_main
from euroflow.quantize.gguf_export import export_gguf
from euroflow.quantize.gguf_read import load_gguf_as_hf, read_gguf
from euroflow.quantize.kquant import calibration_tokens, read_imatrix

if os.environ.get("EUROFLOW_REQUIRE_LLAMA_CPP") == "1":
    import llama_cpp
else:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (`make test` builds it)")

LANGS = ("en", "de", "ka")
TOKENS = 1024
CHUNK = 64


@pytest.fixture(scope="module")
def wide(tmp_path_factory, data_root):
    """A 256-wide model (K-quant blocks are 256 columns), its F16 GGUF and a Megatron dataset per language."""
    import sentencepiece as spm
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tiny_model import build_model_dir, ntrex_lines

    root = tmp_path_factory.mktemp("kquant")
    model_dir = build_model_dir(root / "model", data_root, hidden_size=256, intermediate_size=512, train_steps=10)
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    datasets = {}
    for lang in LANGS:
        prefix = str(root / f"{lang}.train")
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.int32)
        for line in ntrex_lines(data_root, lang, 600)[150:]:  # past the lines the model was trained on
            document = np.asarray([1, *sp.encode(line), 2], dtype=np.int32)
            builder.add_document(document, [len(document)])
        builder.finalize(prefix + ".idx")
        datasets[lang] = prefix
    f16 = root / "wide-F16.gguf"
    export_gguf(model_dir, f16, "F16")
    imatrix = root / "wide.imatrix.gguf"
    argv = ["imatrix", "--model", str(model_dir), "--data", *[f"{k}={v}" for k, v in datasets.items()],
            "--tokens-per-language", str(TOKENS), "--chunk-size", str(CHUNK), "--device", "cpu", "--out", str(imatrix)]
    assert quantize_main(argv) == 0
    return {"model": model_dir, "datasets": datasets, "f16": f16, "imatrix": imatrix, "root": root}


def test_the_importance_matrix_is_the_mean_squared_input_of_every_matrix_multiplication(wide):
    matrix = read_imatrix(wide["imatrix"])
    per_layer = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    assert sorted(matrix["entries"]) == sorted(["output.weight"] + [f"blk.{i}.{n}.weight" for i in (0, 1) for n in per_layer])
    assert matrix["languages"] == list(LANGS) and matrix["tokens_per_language"] == TOKENS
    assert matrix["chunk_count"] == len(LANGS) * TOKENS // CHUNK and matrix["chunk_size"] == CHUNK
    # the output projection reads the final norm's output: its mean square per column, over the same chunks
    model = load_model(wide["model"], "cpu")
    sample = calibration_tokens(wide["datasets"], TOKENS)
    assert {lang: len(tokens) for lang, tokens in sample.items()} == {lang: TOKENS for lang in LANGS}
    squares = []
    with torch.no_grad():
        for tokens in sample.values():
            for start in range(0, TOKENS, CHUNK):
                hidden = model.model(torch.as_tensor(tokens[start:start + CHUNK]).unsqueeze(0)).last_hidden_state[0]
                squares.append(hidden.double() ** 2)
    expected = torch.cat(squares).mean(0).numpy()
    np.testing.assert_allclose(matrix["entries"]["output.weight"], expected, rtol=1e-4)
    assert matrix["entries"]["blk.1.ffn_down.weight"].shape == (512,) and (matrix["entries"]["blk.1.ffn_down.weight"] > 0).all()


@pytest.mark.parametrize("qtype,types", [("Q6_K", {"Q6_K"}), ("Q5_K_M", {"Q5_K", "Q6_K"}), ("Q4_K_M", {"Q4_K", "Q6_K"})])
def test_llama_cpp_quantizes_and_runs_each_k_quant(wide, qtype, types, tmp_path):
    out = tmp_path / f"wide-{qtype}.gguf"
    summary_path = tmp_path / "summary.json"
    assert quantize_main(["kquant", "--source", str(wide["f16"]), "--type", qtype, "--imatrix", str(wide["imatrix"]),
                          "--out", str(out), "--summary", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    matrices = {name: kind for name, kind in summary["tensor_types"].items() if not name.endswith("norm.weight")}
    assert set(matrices.values()) == types, matrices
    assert matrices["output.weight"] == "Q6_K"  # llama.cpp's rule for the output projection
    contents = read_gguf(out)
    assert contents.metadata["quantize.imatrix.file"] == "wide.imatrix.gguf"
    assert contents.metadata["quantize.imatrix.dataset"] == "en:en.train,de:de.train,ka:ka.train"
    assert contents.metadata["quantize.imatrix.entries_count"] == 15
    assert contents.metadata["euroflow.imatrix.languages"] == "en,de,ka"
    assert contents.metadata["euroflow.imatrix.tokens_per_language"] == TOKENS
    assert contents.metadata["general.file_type"] == int(getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}"))
    assert summary["imatrix"]["languages"] == list(LANGS)

    ids = [1, *range(5, 45)]
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_threads=2, logits_all=True, verbose=False, seed=0)
    llm.eval(ids)
    ours = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    with torch.no_grad():
        fp32 = load_model(wide["model"], "cpu")(torch.tensor([ids])).logits[0].double().numpy()
        dequantized = load_gguf_as_hf(out)[0](torch.tensor([ids])).logits[0].double().numpy()
    scale = fp32.std()
    # llama.cpp runs what our reader reads back, up to its 8-bit rounding of the activations (Q8_K) for K-quant dot products
    assert np.abs(ours - dequantized).mean() < 0.02 * scale and np.abs(ours - dequantized).max() < 0.25 * scale
    # against the unquantized model: 6 to 4 bits of weight error, which this barely trained model amplifies at a few positions
    assert np.abs(ours - fp32).mean() < 0.15 * scale
    assert (ours.argmax(-1) == fp32.argmax(-1)).mean() >= 0.7


def test_the_importance_matrix_lowers_the_error_where_the_activations_are(wide, tmp_path):
    """What an importance matrix is for: with it, the error weighted by each column's mean squared input
    (the error of the layer's output, to first order) is lower than without."""
    plain, guided = tmp_path / "plain.gguf", tmp_path / "guided.gguf"
    assert quantize_main(["kquant", "--source", str(wide["f16"]), "--type", "Q4_K_M", "--out", str(plain)]) == 0
    assert quantize_main(["kquant", "--source", str(wide["f16"]), "--type", "Q4_K_M", "--imatrix", str(wide["imatrix"]),
                          "--out", str(guided)]) == 0
    assert "quantize.imatrix.file" not in read_gguf(plain).metadata
    reference, without, with_ = (read_gguf(p) for p in (wide["f16"], plain, guided))
    matrix = read_imatrix(wide["imatrix"])["entries"]
    from euroflow.quantize.gguf_read import gguf_to_hf_name

    errors = {"without": 0.0, "with": 0.0}
    for name, weights in matrix.items():
        hf = gguf_to_hf_name(name)
        for label, contents in (("without", without), ("with", with_)):
            errors[label] += float((((contents.tensors[hf] - reference.tensors[hf]) ** 2) * weights).sum())
    assert errors["with"] < 0.7 * errors["without"], errors


def test_bad_imatrix_inputs_are_one_line_errors(wide, tmp_path):
    base = ["imatrix", "--model", str(wide["model"]), "--tokens-per-language", "64", "--out", str(tmp_path / "x.imatrix.gguf")]
    with pytest.raises(EuroflowError, match=r"^--data 'en': expected LANG=PREFIX$"):
        quantize_main([*base, "--data", "en"])
    with pytest.raises(EuroflowError, match=r"^--data en=.*nothing: no Megatron dataset there \(.*nothing.idx missing\)$"):
        quantize_main([*base, "--data", f"en={tmp_path / 'nothing'}"])
    with pytest.raises(EuroflowError, match=r"^--chunk-size 65 \(quantization.imatrix.chunk_size\): must be 2 to the model's context, 64$"):
        quantize_main([*base, "--data", f"en={wide['datasets']['en']}", "--chunk-size", "65"])
    with pytest.raises(EuroflowError, match=r"not an importance matrix"):
        quantize_main(["kquant", "--source", str(wide["f16"]), "--type", "Q4_K_M", "--imatrix", str(wide["f16"]),
                       "--out", str(tmp_path / "y.gguf")])
    assert not list(tmp_path.glob("*.gguf"))  # nothing half-written


def test_the_importance_matrix_is_its_own_kind_of_artifact():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    import train_corpus

    from euroflow.paths import RunPaths, artifact_category

    paths = RunPaths(train_corpus.tiny_config())
    assert artifact_category(paths.imatrix) == "importance_matrix"
    assert artifact_category(paths.gguf("Q4_K_M")) == "quantized_model"


def test_long_lists_fit_llama_cpps_128_byte_strings_visibly():
    from euroflow.quantize.kquant import _fit

    languages = ",".join(f"l{i:02d}" for i in range(60))
    fitted = _fit(languages)
    assert len(fitted.encode()) <= 127 and fitted.endswith(" more") and fitted.startswith("l00,l01,")
    kept = fitted.split(",+")[0].split(",")
    assert fitted == ",".join(kept) + f",+{60 - len(kept)} more"
    assert _fit("en,de") == "en,de"
