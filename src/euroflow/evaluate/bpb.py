"""Bits per byte of a causal LM on sentences, per language on the FLORES-200 ``test`` split.

Each sentence is scored on its own in the training document format ``[bos] + ids + [eos]``: every
token after BOS is predicted, EOS included. bpb = total NLL in bits / total UTF-8 bytes of the
sentences (without BOS/EOS, which have no bytes). A model that knows nothing about bytes needs 8 bits
per byte (the uniform-byte baseline). Sentences longer than the model's context are scored in
overlapping windows (``scoring.windows``); their count is reported.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from euroflow.evaluate.model import SpTokenizer, load_model, load_tokenizer
from euroflow.evaluate.scoring import Request, score_requests

UNIFORM_BYTE_BPB = 8.0
FLORES_SPLIT = "test"


def bits_per_byte(model, tokenizer: SpTokenizer, sentences: Iterable[str], *, batch_size: int = 16, reference=None) -> dict:
    """bpb of ``sentences`` plus the totals it is made of (bits, bytes, predicted tokens); given a
    ``reference`` model, also the mean KL(reference || model) per predicted token (nats)."""
    sentences = list(sentences)
    if not sentences:
        raise ValueError("no sentences to score")
    requests = [Request([tokenizer.bos_id, *ids, tokenizer.eos_id], 1) for ids in tokenizer.encode_batch(sentences)]
    long_sentences = sum(len(r.ids) > int(model.config.max_position_embeddings) for r in requests)
    scores = score_requests(model, requests, batch_size=batch_size, pad_id=tokenizer.unk_id, reference=reference)
    nll_nats = math.fsum(s.nll for s in scores)
    bits = nll_nats / math.log(2)
    n_bytes = sum(len(s.encode("utf-8")) for s in sentences)
    tokens = sum(s.n_targets for s in scores)
    kl = {} if reference is None else {"kl_per_token": math.fsum(s.kl for s in scores) / tokens}
    return {
        **kl,
        "bpb": bits / n_bytes,
        "bits": bits,
        "bytes": n_bytes,
        "predicted_tokens": tokens,
        "bits_per_token": bits / tokens,
        "bytes_per_token": n_bytes / tokens,
        "sentences": len(sentences),
        "windowed_sentences": long_sentences,
    }


def flores_sentences(data_root: str | Path, lang: str) -> list[str]:
    from euroflow.data.flores import load_flores

    return load_flores(Path(data_root), lang, [FLORES_SPLIT])


def flores_bpb(model, tokenizer: SpTokenizer, data_root: str | Path, languages: list[str], *, batch_size: int = 16) -> dict:
    """Per-language bpb on FLORES ``test``; the result is the ``bpb`` JSON document (without model info)."""
    from euroflow.data.flores import is_derived

    per_language = {}
    for lang in languages:
        result = bits_per_byte(model, tokenizer, flores_sentences(data_root, lang), batch_size=batch_size)
        result["derived_from"] = "sr (Cyrillic->Latin transliteration)" if is_derived(lang) else None
        per_language[lang] = result
    values = [r["bpb"] for r in per_language.values()]
    return {
        "metric": "bits_per_byte",
        "dataset": "FLORES-200 (via SIB-200)",
        "split": FLORES_SPLIT,
        "document_format": "[bos] + ids + [eos], each sentence scored independently",
        "baseline": {"name": "uniform over 256 byte values", "bpb": UNIFORM_BYTE_BPB},
        "languages": per_language,
        "macro_mean_bpb": sum(values) / len(values),
        "micro_bpb": sum(r["bits"] for r in per_language.values()) / sum(r["bytes"] for r in per_language.values()),
    }


def evaluate_bpb(
    model_dir: str | Path, data_root: str | Path, languages: list[str], *, batch_size: int = 16, device: str = "auto"
) -> dict:
    model = load_model(model_dir, device)
    tokenizer = load_tokenizer(model_dir)
    result = flores_bpb(model, tokenizer, data_root, languages, batch_size=batch_size)
    return {"model": str(model_dir), **result}
