"""A small real tokenizer and a tiny Llama, both trained on NTREX text, for the evaluate and quantize tests (fixtures in conftest.py).

The tokenizer comes from the tokenizer room (``train_tokenizer_from_texts``, the contract's
SentencePiece BPE); the model is a 2-layer ``LlamaForCausalLM`` trained for a few steps and saved with
``save_pretrained`` next to the tokenizer files, as ``euroflow train export-hf`` lays them out.
"""

from __future__ import annotations

import os
from pathlib import Path

FIXTURE_LANGS = ("en", "de", "uk", "el", "ka", "sr", "it", "tr", "et", "pl")
VOCAB_SIZE = 600


def ntrex_lines(data_root: Path, lang: str, limit: int) -> list[str]:
    path = data_root / "parallel" / "ntrex128" / f"{lang}.txt"
    return path.read_text(encoding="utf-8").splitlines()[:limit]


def train_tokenizer(out_dir: Path, texts: list[str]) -> Path:
    from euroflow.tokenizer.train import train_tokenizer_from_texts

    return Path(train_tokenizer_from_texts(texts, VOCAB_SIZE, out_dir))


def build_model_dir(out_dir: Path, data_root: Path, *, train_steps: int = 30, max_positions: int = 64, tied: bool = False,
                    hidden_size: int = 64, intermediate_size: int = 160) -> Path:
    """Tokenizer + ``LlamaForCausalLM`` (2 layers, hidden 64, 4 heads / 2 KV heads) saved with save_pretrained."""
    import shutil

    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = [line for lang in FIXTURE_LANGS for line in ntrex_lines(data_root, lang, 150)]
    tok_dir = train_tokenizer(out_dir / "tokenizer", texts)
    sp = spm.SentencePieceProcessor()
    sp.Load(str(tok_dir / "tokenizer.model"))

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=sp.get_piece_size(),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=tied,
        initializer_range=0.05,
    )
    model = LlamaForCausalLM(config)
    if train_steps:
        # a short real training run on NTREX documents ([bos] + ids + [eos]) so the model is not uniform
        stream: list[int] = []
        for ids in sp.encode(texts):
            stream.extend([1, *ids, 2])
        data = torch.tensor(stream[: (len(stream) // max_positions) * max_positions]).view(-1, max_positions)
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(train_steps):
            batch = data[torch.randint(0, len(data), (8,), generator=generator)]
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
    model_dir = out_dir / "hf"
    model.save_pretrained(model_dir)
    for name in os.listdir(tok_dir):
        shutil.copy(tok_dir / name, model_dir / name)
    return model_dir
