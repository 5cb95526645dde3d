"""Tokenizer training: id layout, Hugging Face equivalence, blend-weighted sampling, timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from euroflow.data.flores import load_flores
from euroflow.data.hplt import write_shard
from euroflow.errors import EuroflowError
from euroflow.tokenizer import cli
from euroflow.tokenizer.train import load_sentencepiece, sample_texts, train_tokenizer_from_texts

TINY = Path(__file__).resolve().parents[2] / "workflow" / "configs" / "tiny.yaml"

RARE = [
    "",
    " ",
    " leading space",
    "two  spaces   three",
    "trailing space ",
    "line one\nline two\n\nafter a blank line",
    "tab\there",
    "Ǆ ǆ ﬁ ligature, ẞ, İstanbul, Ǿ, ŉ",
    "emoji 😀🇪🇺👩🏽‍💻 and CJK 日本語 中文 한국어",
    "combining e\u0301 vs é, zero\u200bwidth, soft\u00adhyphen, NBSP\u00a0here",
    "ქართული ენა და ანბანი: ჰ ჯ ჭ ხ ქ",
    "Ελληνικά: ΐ ΰ ϊ ϋ ς Ά",
    "Кириллица: ё ї є ґ ђ ћ џ љ њ ѓ ќ ѕ",
    "literal <s> and </s> and <unk> in text",
    "numbers 1234567890 3.14159 1,000,000 ½ ² ①",
    "Maltese ħ ż ċ ġ; Icelandic þ ð æ; Irish Ó Éireann",
    "\u0000control\u0007chars\u001b",
]


def test_id_layout_and_meta(pipeline):
    tok = pipeline["tokenizer"]
    sp = load_sentencepiece(tok)
    assert sp.get_piece_size() == 8000
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.unk_id() == 0 and sp.bos_id() == 1 and sp.eos_id() == 2 and sp.pad_id() == -1
    assert [sp.id_to_piece(i) for i in (3, 258)] == ["<0x00>", "<0xFF>"]
    assert json.loads((tok / "tokenizer_meta.json").read_text()) == {
        "type": "sentencepiece-bpe", "vocab_size": 8000, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1,
    }
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tok / name).is_file()
    # byte fallback: nothing is unknown; digits are split
    assert 0 not in sp.encode("😀 日本語 \u0007")
    assert [p for p in sp.encode("12345", out_type=str) if p != "▁"] == list("12345")


def test_identity_normalization_keeps_text(pipeline):
    sp = load_sentencepiece(pipeline["tokenizer"])
    for text in RARE:
        assert sp.decode(sp.encode(text)) == text


def test_hf_tokenizer_encodes_exactly_like_sentencepiece(pipeline, data_root):
    from transformers import AutoTokenizer

    tok = pipeline["tokenizer"]
    sp = load_sentencepiece(tok)
    hf = AutoTokenizer.from_pretrained(str(tok))
    texts = list(RARE)
    for lang in ("en", "de", "el", "ka", "uk", "bg", "mt", "is", "ga", "sr-Latn", "tr", "hu"):
        texts += load_flores(data_root, lang, ["dev"])
    assert len(texts) > 1000
    mismatches = [t for t in texts if hf(t, add_special_tokens=False).input_ids != sp.encode(t)]
    assert mismatches == []
    for text in texts[:300]:
        ids = sp.encode(text)
        assert hf(text).input_ids == [1] + ids  # <s> prepended by default, like Llama
        assert hf.decode(ids) == sp.decode(ids)
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id) == (1, 2, 0)


def test_sample_follows_its_shares_and_timing(pipeline):
    # the demo samples for parity: round 0 on the blend's weights, the chosen round on shares within max_factor of them
    summary = pipeline["summary"]
    blend = json.loads(pipeline["blend"].read_text())
    assert summary["sampling"] == "parity" and summary["sample_chars"] == pytest.approx(4_000_000, rel=0.03)
    rounds = summary["parity"]["rounds"]
    for entry in blend["languages"]:
        lang = entry["lang"]
        assert rounds[0]["shares"][lang] == pytest.approx(entry["weight"]), lang
        row = summary["languages"][lang]
        assert row["sampled_chars"] == pytest.approx(row["share"] * 4_000_000, rel=0.1), lang
        assert 1 / 4 <= row["share"] / entry["weight"] <= 4 * 1.0001, lang
    assert summary["flores_excluded"] is True
    assert summary["training_seconds"] < 60
    print(f"tokenizer training: {summary['training_seconds']:.1f} s for {summary['sample_chars']:,} chars, vocab 8000")


def test_sampling_is_deterministic_repeats_small_languages_and_skips_flores(tmp_path, data_root):
    flores = load_flores(data_root, "de", ["dev"])
    ntrex = (data_root / "parallel" / "ntrex128" / "de.txt").read_text(encoding="utf-8").split("\n")[:50]
    shard = tmp_path / "de.jsonl.zst"
    write_shard(shard, [{"text": "\n".join(ntrex)}, {"text": flores[0] + "\n" + flores[1]}])
    small = tmp_path / "ka.jsonl.zst"
    write_shard(small, [{"text": "ერთი ორი სამი"}])
    available = sum(len(line) for line in ntrex if line.strip())
    weights = {"de": 0.5, "ka": 0.5}
    exclude = set(flores)
    first, report = sample_texts({"de": shard, "ka": small}, weights, 2 * available, seed=7, exclude=exclude)
    again, _ = sample_texts({"de": shard, "ka": small}, weights, 2 * available, seed=7, exclude=exclude)
    other, _ = sample_texts({"de": shard, "ka": small}, weights, 2 * available, seed=8, exclude=exclude)
    assert first == again and first != other
    assert report["de"]["flores_lines_excluded"] == 2 and not set(first["de"]) & exclude
    assert report["de"]["sampled_chars"] == available  # weight x total = exactly one pass
    assert report["ka"]["sampled_chars"] >= available * 0.99  # one 13-char line repeated to its share
    assert report["ka"]["epochs"] == pytest.approx(available / len("ერთი ორი სამი"), abs=1)


def test_from_texts_small_vocab_and_bad_vocab(tmp_path):
    texts = ["Γειά σου κόσμε, καλημέρα.", "Hello world, good morning.", "Guten Morgen, Welt."] * 50
    out = train_tokenizer_from_texts(texts, 300, tmp_path / "tok")
    assert load_sentencepiece(out).get_piece_size() == 300
    again = train_tokenizer_from_texts(texts, 300, tmp_path / "again")
    for name in ("tokenizer.model", "tokenizer.json"):  # deterministic, byte for byte
        assert (out / name).read_bytes() == (again / name).read_bytes()
    with pytest.raises(EuroflowError, match="SentencePiece training failed"):
        train_tokenizer_from_texts(texts, 100, tmp_path / "bad")  # below 3 specials + 256 bytes
    assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "tok"]


def test_cli_chain_on_two_languages(tmp_path, data_root, capsys):
    """ntrex-shard -> prepare -> dedup -> weights -> tokenizer train -> parity."""
    import yaml

    from euroflow.data import cli as data_cli

    raw = yaml.safe_load(TINY.read_text())
    raw["paths"]["data_root"] = str(data_root)
    raw["languages"] = ["de", "ka"]
    raw["tokenizer"] = {"vocab_size": 700, "sample_chars": 200_000}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    shards, stats = [], []
    for lang in ("de", "ka"):
        assert data_cli.main(["ntrex-shard", "--config", str(config), "--lang", lang, "--out", str(tmp_path / f"{lang}.raw.jsonl.zst")]) == 0
        shards.append(f"{lang}={tmp_path / f'{lang}.jsonl.zst'}")
        stats.append(str(tmp_path / f"{lang}.json"))
        prepared = [str(tmp_path / f"{lang}.{ext}") for ext in ("jsonl.zst", "sig.npz", "lengths.npy", "report.json")]
        assert data_cli.main(["prepare", "--config", str(config), "--lang", lang, "--input", str(tmp_path / f"{lang}.raw.jsonl.zst"),
                              "--out", prepared[0], "--signatures", prepared[1], "--lengths", prepared[2], "--report", prepared[3]]) == 0
        assert data_cli.main(["dedup", "--config", str(config), "--lang", lang, "--reports", prepared[3],
                              "--out", str(tmp_path / f"{lang}.npz"), "--stats", stats[-1]]) == 0
    assert data_cli.main(["weights", "--config", str(config), "--stats", *stats, "--out", str(tmp_path / "blend.json")]) == 0
    out = tmp_path / "tok"
    assert cli.main(["train", "--config", str(config), "--shards", *shards, "--blend", str(tmp_path / "blend.json"), "--out", str(out)]) == 0
    sample = json.loads((out / "training_sample.json").read_text())
    assert sorted(sample["languages"]) == ["de", "ka"] and sample["vocab_size"] == 700
    assert load_sentencepiece(out).get_piece_size() == 700
    code = cli.main(["parity", "--tokenizer", str(out), "--config", str(config), "--languages", "de", "ka",
                     "--out-json", str(tmp_path / "p.json"), "--out-md", str(tmp_path / "p.md")])
    assert code == 0
    assert set(json.loads((tmp_path / "p.json").read_text())["languages"]) == {"de", "ka"}
    capsys.readouterr()
    # a shard whose language is not in the blend is refused, and nothing is written
    en = tmp_path / "en.jsonl.zst"  # an HPLT-style shard: its language is read from its documents
    assert data_cli.main(["ntrex-shard", "--data-root", str(data_root), "--lang", "en", "--out", str(en)]) == 0
    bad = tmp_path / "tok-bad"
    assert cli.main(["train", "--config", str(config), "--shards", *shards, str(en), "--blend", str(tmp_path / "blend.json"), "--out", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not in the blend" in err and "en" in err
    assert not bad.exists()


def test_same_inputs_and_seed_give_a_byte_identical_tokenizer_directory(pipeline, run_config, tmp_path):
    from euroflow.tokenizer.train import train_tokenizer

    again = tmp_path / "tokenizer"
    train_tokenizer(run_config, pipeline["clean"], pipeline["blend"], again)
    first = {p.name: p.read_bytes() for p in pipeline["tokenizer"].iterdir()}
    assert {p.name: p.read_bytes() for p in again.iterdir()} == first
