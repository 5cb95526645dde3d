import json
import re

import pytest

from euroflow.errors import EuroflowError
from euroflow.quantize.cli import main as quantize_main
from euroflow.quantize.gguf_export import export_gguf
from euroflow.quantize.int8 import export_int8
from euroflow.quantize.quality import quality_table


@pytest.fixture(scope="module")
def variants(tiny_model_dir, tiny_gguf_files, tmp_path_factory):
    int8 = tmp_path_factory.mktemp("variants") / "tiny-int8.pt"
    export_int8(tiny_model_dir, int8)
    return tiny_gguf_files, int8


def test_quality_table_for_two_languages(tiny_model_dir, data_root, variants, tmp_path):
    gguf_files, int8 = variants
    out_json, out_md = tmp_path / "quality.json", tmp_path / "quality.md"
    argv = ["quality", "--model", str(tiny_model_dir), "--gguf", str(gguf_files["F16"]), str(gguf_files["Q8_0"]),
            "--int8", str(int8), "--data-root", str(data_root), "--languages", "en,uk", "--max-sentences", "24",
            "--out-json", str(out_json), "--out-md", str(out_md), "--out-png", str(tmp_path / "frontier.png")]
    assert quantize_main(argv) == 0
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads(out_json.read_text())
    assert table["languages"] == ["en", "uk"]
    assert table["sentences_per_language"] == {"en": 24, "uk": 24}
    rows = {v["name"]: v for v in table["variants"]}
    assert list(rows) == ["hf-fp32", "gguf-F16", "gguf-Q8_0", "torch-int8"]
    assert rows["hf-fp32"]["mean_delta_vs_fp32"] == 0.0
    for name, tolerance in (("gguf-F16", 1e-3), ("gguf-Q8_0", 2e-2), ("torch-int8", 5e-2)):
        assert set(rows[name]["bpb"]) == {"en", "uk"}
        assert 0 < rows[name]["max_abs_delta_vs_fp32"] < tolerance, name
    assert rows["gguf-F16"]["file_size"] > rows["gguf-Q8_0"]["file_size"]
    assert rows["gguf-Q8_0"]["file_size"] == gguf_files["Q8_0"].stat().st_size

    # KL of each variant's next-token distribution from the reference's: none for the reference, least for F16
    assert rows["hf-fp32"]["kl"] == {"en": 0.0, "uk": 0.0}
    assert 0 < rows["gguf-F16"]["max_kl"] < rows["gguf-Q8_0"]["mean_kl"] < 0.05
    assert rows["gguf-Q8_0"]["bpb_increase"]["uk"] == pytest.approx(
        (rows["gguf-Q8_0"]["bpb"]["uk"] - rows["hf-fp32"]["bpb"]["uk"]) / rows["hf-fp32"]["bpb"]["uk"])

    markdown = out_md.read_text()
    assert "| variant | file size (MiB) | mean bpb | mean delta | max abs delta | mean KL | max KL |" in markdown
    assert "| language | hf-fp32 | " in markdown
    assert "\n| en | " in markdown and "\n| uk | " in markdown
    for name in rows:
        assert f"| {name} |" in markdown


def test_gguf_of_another_tokenizer_is_rejected(tiny_model_dir, data_root, tmp_path):
    import shutil

    from euroflow.tokenizer.train import train_tokenizer_from_texts

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    train_tokenizer_from_texts(["ein ganz anderer Text mit anderen Wörtern"] * 50, 300, tmp_path / "tok")
    shutil.copy(tmp_path / "tok" / "tokenizer.model", other / "tokenizer.model")
    export_gguf(other, tmp_path / "other.gguf", "F16")
    with pytest.raises(EuroflowError, match="not this model's tokenizer"):
        quality_table(tiny_model_dir, [tmp_path / "other.gguf"], None, data_root, ["en"], max_sentences=2)


def test_gates_pass_with_the_table_and_fail_naming_language_variant_and_figure(tiny_model_dir, data_root, variants, tmp_path, capsys):
    gguf_files, int8 = variants
    quality = tmp_path / "quality.json"
    assert quantize_main(["quality", "--model", str(tiny_model_dir), "--gguf", str(gguf_files["Q8_0"]), "--int8", str(int8),
                          "--data-root", str(data_root), "--languages", "de,ka", "--max-sentences", "12",
                          "--out-json", str(quality), "--out-md", str(tmp_path / "quality.md")]) == 0
    table = json.loads(quality.read_text())
    out_json, out_md = tmp_path / "gates.json", tmp_path / "gates.md"
    gates = ["gates", "--quality", str(quality), "--out-json", str(out_json), "--out-md", str(out_md)]

    assert quantize_main([*gates, "--gate", "Q8_0=0.5,0.5", "--gate", "int8=0.5,-"]) == 0
    result = json.loads(out_json.read_text())
    assert [(r["variant"], r["language"], r["verdict"]) for r in result["rows"]] == [
        ("gguf-Q8_0", "de", "pass"), ("gguf-Q8_0", "ka", "pass"), ("torch-int8", "de", "pass"), ("torch-int8", "ka", "pass")]
    assert result["rows"][1]["kl"] == table["variants"][1]["kl"]["ka"] and result["rows"][3]["max_kl"] is None
    assert re.search(r"\n\| gguf-Q8_0 +\| ka +\| [0-9.]+ \| +[+-][0-9.]+% \| \+50\.00% \| [0-9.]+ \| +0\.5000 \| pass +\|\n", out_md.read_text())
    out_json.unlink()

    # a threshold of 0 (a quantized variant always diverges a little): every language of that variant fails,
    # by name and figure, and nothing is written
    capsys.readouterr()
    with pytest.raises(EuroflowError) as failure:
        quantize_main([*gates, "--gate", "Q8_0=-,0", "--gate", "int8=0.5,0.5"])
    kl = table["variants"][1]["kl"]
    assert str(failure.value).startswith("quantization gates failed for 2 of 4 variant-language pairs "
                                         f"(gguf-Q8_0 de KL {kl['de']:.3g} > 0; gguf-Q8_0 ka KL {kl['ka']:.3g} > 0)")
    assert "set quantization.gates.<variant>" in str(failure.value)
    err = capsys.readouterr().err
    assert "| gguf-Q8_0 | de " in err and "FAIL: KL" in err and "torch-int8" not in err
    assert not out_json.exists()
    with pytest.raises(EuroflowError, match=r"^--gate 'Q8_0=0.01': expected VARIANT=BPB,KL"):
        quantize_main([*gates, "--gate", "Q8_0=0.01"])



def test_the_kl_is_the_exact_divergence_of_the_two_next_token_distributions(tiny_model_dir, data_root, variants):
    import torch

    from euroflow.evaluate.bpb import bits_per_byte, flores_sentences
    from euroflow.evaluate.model import load_model, load_tokenizer
    from euroflow.quantize.gguf_read import load_gguf_as_hf

    gguf_files, _ = variants
    tokenizer = load_tokenizer(tiny_model_dir)
    sentences = flores_sentences(data_root, "de")[:16]
    reference, variant = load_model(tiny_model_dir, "cpu"), load_gguf_as_hf(gguf_files["Q8_0"])[0]
    measured = bits_per_byte(variant, tokenizer, sentences, batch_size=5, reference=reference)
    exact, tokens = 0.0, 0
    with torch.no_grad():
        for ids in tokenizer.encode_batch(sentences):
            x = torch.tensor([[tokenizer.bos_id, *ids, tokenizer.eos_id]])
            p = torch.log_softmax(reference(x).logits[0, :-1].double(), -1)
            q = torch.log_softmax(variant(x).logits[0, :-1].double(), -1)
            exact += float((p.exp() * (p - q)).sum())
            tokens += x.shape[1] - 1
    assert tokens == measured["predicted_tokens"]
    assert measured["kl_per_token"] == pytest.approx(exact / tokens, rel=1e-2)  # padded batches: float32 noise on a KL of ~1e-5
    assert bits_per_byte(reference, tokenizer, sentences, reference=reference)["kl_per_token"] == pytest.approx(0.0, abs=1e-9)
