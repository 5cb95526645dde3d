"""The demo training corpus must not contain evaluation text (FLORES, and Belebele, whose passages are FLORES)."""

from __future__ import annotations

import gzip
import json

from euroflow.data.flores import load_flores
from euroflow.data.ntrex import ntrex_documents
from euroflow.languages import ALL_KEYS


def test_no_flores_sentence_in_any_ntrex_document(data_root):
    for lang in ALL_KEYS:
        flores = {s.strip() for s in load_flores(data_root, lang, ("train", "dev", "test")) if len(s.strip()) > 30}
        corpus = "\n".join(doc["text"] for doc in ntrex_documents(data_root, lang))
        assert len(flores) > 900
        leaked = [s for s in flores if s in corpus]
        assert leaked == [], f"{lang}: {len(leaked)} FLORES sentences in the NTREX demo corpus"


def test_no_belebele_passage_sentence_in_the_corpus(data_root):
    for lang in ("de", "en"):
        with gzip.open(data_root / "mc" / "belebele" / f"{lang}.jsonl.gz", "rt", encoding="utf-8") as fh:
            passages = {json.loads(line)["context"] for line in fh}
        sentences = {s.strip() for p in passages for s in p.split(". ") if len(s.strip()) > 40}
        corpus = "\n".join(doc["text"] for doc in ntrex_documents(data_root, lang))
        assert not [s for s in sentences if s in corpus]
