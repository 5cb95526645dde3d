"""Tokenizer fertility and parity on FLORES ``train`` + ``dev`` (800 aligned sentences per language).

Per language: tokens per word (fertility; words = whitespace-separated), tokens per sentence, characters
per token, the share of byte-fallback tokens, and parity = tokens(lang) / tokens(en) summed over the
same aligned sentences (Petrov et al. 2023, "Language model tokenizers introduce unfairness between
languages"). Tokens are SentencePiece pieces without ``<s>``/``</s>``. FLORES is evaluation data: it
is only read here, never trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from euroflow import languages
from euroflow.atomic import atomic_path
from euroflow.data.flores import is_derived, load_flores
from euroflow.errors import EuroflowError
from euroflow.tokenizer.train import load_sentencepiece

REFERENCE = "en"
DEFAULT_SPLITS = ("train", "dev")


def _measure(processor, sentences: list[str]) -> dict[str, Any]:
    encoded = processor.encode(sentences)
    tokens = sum(len(ids) for ids in encoded)
    byte_tokens = sum(processor.is_byte(i) for ids in encoded for i in ids)
    words = sum(len(s.split()) for s in sentences)
    chars = sum(len(s) for s in sentences)
    return {
        "sentences": len(sentences),
        "words": words,
        "chars": chars,
        "bytes": sum(len(s.encode("utf-8")) for s in sentences),
        "tokens": tokens,
        "tokens_per_word": tokens / words if words else None,
        "tokens_per_sentence": tokens / len(sentences) if sentences else None,
        "chars_per_token": chars / tokens if tokens else None,
        "byte_fallback_share": byte_tokens / tokens if tokens else None,
    }


def parity_report(
    tokenizer_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    langs: Iterable[str],
    *,
    splits: Iterable[str] = DEFAULT_SPLITS,
) -> dict[str, Any]:
    """Measure every language in ``langs`` (English is always measured as the parity reference)."""
    processor = load_sentencepiece(tokenizer_dir)
    splits = list(splits)
    langs = languages.resolve(list(langs))
    reference = load_flores(data_root, REFERENCE, splits)
    ref = _measure(processor, reference)
    rows = {}
    for lang in langs:
        sentences = reference if lang == REFERENCE else load_flores(data_root, lang, splits)
        if len(sentences) != len(reference):
            raise EuroflowError(
                f"{lang}: {len(sentences)} FLORES sentences in {'+'.join(splits)}, but {REFERENCE} has {len(reference)}; not aligned"
            )
        row = _measure(processor, sentences)
        row["parity"] = row["tokens"] / ref["tokens"]
        row["derived_by_transliteration"] = is_derived(lang)
        rows[lang] = row
    return {
        "tokenizer": str(tokenizer_dir),
        "vocab_size": processor.get_piece_size(),
        "data": "FLORES-200 via SIB-200",
        "splits": splits,
        "reference": REFERENCE,
        "words": "whitespace-separated",
        "notes": [
            "sr-Latn has no FLORES file: its sentences are sr transliterated Cyrillic -> Latin"
        ] if any(is_derived(lang) for lang in langs) else [],
        "languages": rows,
    }


def report_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Tokenizer fertility and parity (vocab {report['vocab_size']:,})",
        "",
        f"FLORES-200 `{'+'.join(report['splits'])}`, aligned sentences; words are whitespace-separated; "
        f"parity = tokens / tokens({report['reference']}) over the same sentences.",
        "",
        "| language | sentences | tokens/word | tokens/sentence | chars/token | byte-fallback | parity |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lang, row in report["languages"].items():
        mark = " †" if row["derived_by_transliteration"] else ""
        lines.append(
            f"| {lang}{mark} | {row['sentences']} | {row['tokens_per_word']:.3f} | {row['tokens_per_sentence']:.1f} "
            f"| {row['chars_per_token']:.2f} | {row['byte_fallback_share']:.2%} | {row['parity']:.3f} |"
        )
    if any(row["derived_by_transliteration"] for row in report["languages"].values()):
        lines += ["", "† derived: FLORES has no Serbian Latin file; these are the `sr` sentences transliterated "
                  "Cyrillic → Latin (lj, nj, dž for љ, њ, џ)."]
    return "\n".join(lines) + "\n"


def write_parity_report(
    tokenizer_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    langs: Iterable[str],
    out_json: str | os.PathLike,
    out_md: str | os.PathLike,
    *,
    splits: Iterable[str] = DEFAULT_SPLITS,
) -> dict[str, Any]:
    report = parity_report(tokenizer_dir, data_root, langs, splits=splits)
    markdown = report_markdown(report)
    # a tokenizer sampled for parity (tokenizer.sampling: parity) brings its devtest comparison along
    from euroflow.tokenizer.balance import REPORT_FILE

    sampling = Path(tokenizer_dir) / REPORT_FILE
    if sampling.is_file():
        from euroflow.jsonfile import read_json
        from euroflow.tokenizer.balance import report_markdown as sampling_markdown

        report["sampling_for_parity"] = read_json(sampling, "tokenizer parity sampling report")
        markdown += "\n" + "\n".join(sampling_markdown(report["sampling_for_parity"]))
    with atomic_path(Path(out_json)) as tmp_json, atomic_path(Path(out_md)) as tmp_md:
        tmp_json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp_md.write_text(markdown, encoding="utf-8")
    return report
