import json
import math

import pytest
import torch

from euroflow.evaluate.bpb import UNIFORM_BYTE_BPB, bits_per_byte, flores_bpb
from euroflow.evaluate.cli import main as evaluate_main
from euroflow.evaluate.model import load_model, load_tokenizer
from euroflow.evaluate.scoring import Request, score_requests, windows

SENTENCES = [
    "The committee met on Monday to discuss the new budget.",
    "Die Regierung hat am Dienstag neue Maßnahmen angekündigt.",
    "Уряд оголосив нові заходи у вівторок.",
    "Η κυβέρνηση ανακοίνωσε νέα μέτρα την Τρίτη.",
    "მთავრობამ სამშაბათს ახალი ზომები გამოაცხადა.",
    "Il governo ha annunciato nuove misure martedì, dopo una lunga riunione del consiglio dei ministri a Roma.",
]


def uniform_model(vocab_size: int, max_positions: int):
    """A real Llama whose output head is zero: every next-token distribution is uniform over the vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model.eval()


@pytest.mark.parametrize("max_positions", [512, 16])
def test_uniform_model_costs_log2_vocab_bits_per_token(tiny_model_dir, max_positions):
    tokenizer = load_tokenizer(tiny_model_dir)
    model = uniform_model(tokenizer.vocab_size, max_positions)
    result = bits_per_byte(model, tokenizer, SENTENCES, batch_size=4)

    predicted = sum(len(tokenizer.encode(s)) + 1 for s in SENTENCES)  # every token after BOS, EOS included
    n_bytes = sum(len(s.encode("utf-8")) for s in SENTENCES)
    assert result["predicted_tokens"] == predicted
    assert result["bytes"] == n_bytes
    assert result["bpb"] == pytest.approx(predicted * math.log2(tokenizer.vocab_size) / n_bytes, rel=1e-6)  # float32 log-softmax
    assert (result["windowed_sentences"] > 0) == (max_positions == 16)


@pytest.mark.parametrize("first_target", [1, 5, 40, 70])
def test_windows_score_each_target_once_with_context(first_target):
    ids = list(range(100))
    pieces = windows(ids, first_target, 16)
    scored = []
    for piece in pieces:
        assert len(piece.ids) <= 16 and piece.first_target >= 1
        start = piece.ids[0]
        scored += [start + i for i in range(piece.first_target, len(piece.ids))]
        if piece is not pieces[0]:
            assert piece.first_target >= 8  # at least half a window of context
    assert scored == list(range(first_target, 100))


def test_windows_short_and_left_truncated():
    assert windows(list(range(16)), 1, 16) == [Request(list(range(16)), 1)]
    # 10 targets after a long context: one window of the last 16 tokens (lm-eval's left truncation)
    assert windows(list(range(50)), 40, 16) == [Request(list(range(34, 50)), 6)]


def test_long_request_scores_as_the_sum_of_its_windows(tiny_model_dir):
    model = load_model(tiny_model_dir)
    ids = [1, *load_tokenizer(tiny_model_dir).encode(" ".join(SENTENCES)), 2]
    assert len(ids) > 2 * model.config.max_position_embeddings
    whole = score_requests(model, [Request(ids, 1)])[0]
    parts = score_requests(model, windows(ids, 1, model.config.max_position_embeddings), batch_size=3)
    assert whole.n_targets == len(ids) - 1 == sum(p.n_targets for p in parts)
    assert whole.nll == pytest.approx(sum(p.nll for p in parts), rel=1e-9)


def test_batched_padded_scoring_matches_one_sentence_at_a_time(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    short = [s for s in SENTENCES if len(tokenizer.encode(s)) + 2 <= model.config.max_position_embeddings]
    assert len(short) >= 3
    bits = 0.0
    with torch.no_grad():
        for sentence in short:
            ids = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(sentence), tokenizer.eos_id]])
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
            bits -= float(logprobs.gather(1, ids[0, 1:, None]).sum()) / math.log(2)
    expected = bits / sum(len(s.encode("utf-8")) for s in short)

    batched = bits_per_byte(model, tokenizer, short, batch_size=len(short))["bpb"]
    one_by_one = bits_per_byte(model, tokenizer, short, batch_size=1)["bpb"]
    assert batched == pytest.approx(expected, rel=1e-5)
    assert one_by_one == pytest.approx(expected, rel=1e-5)
    assert bits_per_byte(model, tokenizer, short, batch_size=len(short))["bpb"] == batched  # deterministic
    assert expected < UNIFORM_BYTE_BPB  # the trained fixture model beats 8 bits per byte


def test_flores_bpb_two_languages_with_derived_serbian_latin(tiny_model_dir, data_root):
    model = load_model(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    result = flores_bpb(model, tokenizer, data_root, ["sr", "sr-Latn"], batch_size=32)
    assert result["baseline"]["bpb"] == 8.0
    assert set(result["languages"]) == {"sr", "sr-Latn"}
    for lang, r in result["languages"].items():
        assert r["sentences"] == 204
        assert 0 < r["bpb"] < 8.0
    assert result["languages"]["sr"]["derived_from"] is None
    assert "transliteration" in result["languages"]["sr-Latn"]["derived_from"]
    # Latin script needs fewer UTF-8 bytes than Cyrillic for the same sentences
    assert result["languages"]["sr-Latn"]["bytes"] < result["languages"]["sr"]["bytes"]


def test_cli_bpb_writes_json(tiny_model_dir, data_root, tmp_path):
    out = tmp_path / "bpb.json"
    assert evaluate_main(["bpb", "--model", str(tiny_model_dir), "--data-root", str(data_root),
                          "--languages", "en", "--batch-size", "32", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert list(document["languages"]) == ["en"]
    assert document["languages"]["en"]["sentences"] == 204
    assert document["macro_mean_bpb"] == document["languages"]["en"]["bpb"]
    assert not list(tmp_path.glob(".*tmp*"))
