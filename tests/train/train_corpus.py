"""Small real training inputs for the train tests: NTREX-128 news text, a SentencePiece BPE
tokenizer made to the tokenizer contract, one Megatron indexed dataset per language, a blend file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

LANGS = ("en", "de", "fr", "pl")
LINES_PER_DOC = 6


def ntrex_documents(data_root: Path, lang: str) -> list[str]:
    lines = (data_root / "parallel" / "ntrex128" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    return [" ".join(lines[i : i + LINES_PER_DOC]) for i in range(0, len(lines), LINES_PER_DOC)]


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path) -> Path:
    """SentencePiece BPE as in the tokenizer contract (byte fallback, unk=0 bos=1 eos=2, no pad).

    Deliberately not euroflow.tokenizer's trainer: the golden loss curve must not move when the
    tokenizer room changes its settings; it pins only the training code."""
    import io

    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.9995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        seed_sentencepiece_size=100000,
        minloglevel=2,
    )
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    meta = {"type": "sentencepiece-bpe", "vocab_size": vocab_size, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
    (out_dir / "tokenizer_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return out_dir


def write_indexed(docs: list[list[int]], prefix: Path) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16)
    for ids in docs:
        builder.add_document(torch.tensor(ids), [len(ids)])
    builder.finalize(str(prefix) + ".idx")


def build(data_root: Path, out: Path, *, vocab_size: int = 1000) -> dict:
    """Tokenizer dir, indexed datasets and blend.json under ``out``; returns their paths."""
    import sentencepiece as spm

    docs = {lang: ntrex_documents(data_root, lang) for lang in LANGS}
    tok_dir = train_tokenizer([d for lang in LANGS for d in docs[lang]], vocab_size, out / "tokenizer")
    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    chars = {lang: sum(map(len, docs[lang])) for lang in LANGS}
    raw = {lang: chars[lang] ** 0.3 for lang in LANGS}
    weights = {lang: raw[lang] / sum(raw.values()) for lang in LANGS}
    entries, flat = [], []
    for lang in LANGS:
        prefix = out / "tokenized" / lang
        prefix.parent.mkdir(parents=True, exist_ok=True)
        write_indexed([[1] + ids + [2] for ids in sp.encode(docs[lang])], prefix)
        entries.append({"lang": lang, "prefix": str(prefix), "weight": weights[lang], "chars": chars[lang],
                        "docs": len(docs[lang]), "expected_epochs": None})
        flat += [weights[lang], str(prefix)]
    blend = {"policy": "temperature", "params": {"alpha": 0.3}, "languages": entries, "megatron_blend": flat}
    blend_path = out / "blend.json"
    blend_path.write_text(json.dumps(blend, indent=1), encoding="utf-8")
    return {"tokenizer": tok_dir, "blend": blend_path}


def read_log(out: Path) -> list[dict]:
    """The live training log: complete for a finished run, up to the last step for a stopped one."""
    return [json.loads(line) for line in (Path(out) / "progress.jsonl").read_text().splitlines()]


def tiny_config(**training) -> dict:
    """A validated run config modeled on workflow/configs/tiny.yaml, small enough for tests."""
    from euroflow.config import validate

    config = {
        "run": {"name": "train-test", "seed": 1234},
        "languages": list(LANGS),
        "data": {"source": {"kind": "ntrex-demo"}, "valid_fraction": 0.05},
        "sampling": {"policy": "temperature", "alpha": 0.3},
        "tokenizer": {"vocab_size": 1000},
        "model": {"num_layers": 2, "hidden_size": 64, "ffn_hidden_size": 176, "num_attention_heads": 4,
                  "num_query_groups": 2, "seq_length": 64},
        "training": {"train_steps": 40, "micro_batch_size": 4, "global_batch_size": 8, "lr": 3.0e-3,
                     "min_lr": 3.0e-4, "warmup_steps": 4, "checkpoint_interval": 10, **training},
        "evaluation": {"bpb_languages": list(LANGS)},
        "quantization": {},
    }
    return validate(config, "<tiny test config>")
