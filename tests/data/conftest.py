"""Fixtures for the data room: the shared multilingual bundle and a small real tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bundle_root() -> Path:
    root = Path(os.environ.get("EUROFLOW_DATA") or REPO.parent / "shared" / "data" / "multilingual")
    assert (root / "parallel" / "ntrex128" / "DOCUMENT_IDS.tsv").is_file(), f"multilingual bundle not found at {root}"
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return bundle_root()


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory, data_root) -> Path:
    """A real SentencePiece BPE tokenizer (vocab 1500) trained on NTREX text of four scripts."""
    from euroflow.tokenizer.train import train_tokenizer_from_texts

    texts = []
    for lang in ("en", "de", "el", "ka", "uk", "sr-Latn"):
        texts += (data_root / "parallel" / "ntrex128" / f"{lang}.txt").read_text(encoding="utf-8").split("\n")[:600]
    return train_tokenizer_from_texts(texts, 1500, tmp_path_factory.mktemp("tok") / "tokenizer")
