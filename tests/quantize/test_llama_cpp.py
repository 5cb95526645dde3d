"""Our GGUF files in real llama.cpp (through llama-cpp-python, which compiles llama.cpp from source).

``make test`` builds llama-cpp-python once (about 5 minutes on 2 idle cores), caches the wheel, installs it
and sets EUROFLOW_REQUIRE_LLAMA_CPP=1, so there this test runs or fails, never skips. Outside ``make test``
it is skipped when ``llama_cpp`` is not importable.
"""

import os

import numpy as np
import pytest
import sentencepiece as spm
import torch

from euroflow.data.flores import load_flores
from euroflow.evaluate.model import load_model
from euroflow.quantize.gguf_read import load_gguf_as_hf

if os.environ.get("EUROFLOW_REQUIRE_LLAMA_CPP") == "1":
    import llama_cpp
else:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (`make test` builds it)")

LANGS = ["en", "de", "uk", "el", "ka", "sr", "sr-Latn", "ga", "mt", "tr"]


def open_llama(path):
    return llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, logits_all=True, verbose=False, seed=0)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0"])
def test_llama_cpp_loads_our_vocabulary_and_tokenizes_like_sentencepiece(tiny_gguf_files, tiny_model_dir, data_root, qtype):
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model_dir / "tokenizer.model"))
    llm = open_llama(tiny_gguf_files[qtype])
    assert llm.n_vocab() == sp.get_piece_size()
    assert (llm.token_bos(), llm.token_eos()) == (sp.bos_id(), sp.eos_id())
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    texts = [llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8") for i in range(llm.n_vocab())]
    assert texts == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]

    sentences = [s for lang in LANGS for s in load_flores(data_root, lang, ["dev"])[:3]]
    sentences += ["  two  leading spaces, digits 2024 and a\ttab", "Ünïcödé ∑ ≠ 漢字 🙂"]
    for sentence in sentences:
        assert llm.tokenize(sentence.encode("utf-8"), add_bos=True, special=False) == [sp.bos_id(), *sp.encode(sentence)], sentence


@pytest.mark.parametrize("qtype,tolerance", [("F16", 0.01), ("Q8_0", 0.1)])
def test_llama_cpp_logits_match_our_model(tiny_gguf_files, tiny_model_dir, data_root, qtype, tolerance):
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model_dir / "tokenizer.model"))
    sentence = load_flores(data_root, "de", ["dev"])[0]
    ids = [sp.bos_id(), *sp.encode(sentence)][:40]

    llm = open_llama(tiny_gguf_files[qtype])
    llm.eval(ids)
    ours = np.asarray(llm.scores[: len(ids)], dtype=np.float64)

    with torch.no_grad():
        fp32 = load_model(tiny_model_dir)(torch.tensor([ids])).logits[0].double().numpy()
        dequantized = load_gguf_as_hf(tiny_gguf_files[qtype])[0](torch.tensor([ids])).logits[0].double().numpy()
    scale = fp32.std()
    # llama.cpp also rounds activations (F16 / Q8_0 dot products), so compare relative to the logit scale
    assert np.abs(ours - fp32).max() < tolerance * scale
    assert np.abs(ours - dequantized).max() < tolerance * scale
    assert (ours.argmax(-1) == fp32.argmax(-1)).mean() >= 0.9
