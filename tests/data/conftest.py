"""Fixtures for the data room: the shared multilingual bundle and a small real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory, data_root) -> Path:
    """A real SentencePiece BPE tokenizer (vocab 1500) trained on NTREX text of four scripts."""
    from euroflow.tokenizer.train import train_tokenizer_from_texts

    texts = []
    for lang in ("en", "de", "el", "ka", "uk", "sr-Latn"):
        texts += (data_root / "parallel" / "ntrex128" / f"{lang}.txt").read_text(encoding="utf-8").split("\n")[:600]
    return train_tokenizer_from_texts(texts, 1500, tmp_path_factory.mktemp("tok") / "tokenizer")
