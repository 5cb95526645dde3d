"""Language sampling weights (measured in characters) and the Megatron blend per split (in tokens).

Two steps, because the tokenizer's training sample needs the weights before any shard is tokenized:
:func:`write_weights` (``weights.json`` + ``weights.md``) from the languages' statistics, then
:func:`write_blend` (``blend.json``, ``blend.md``, ``per_split_data_args.json``) from the weights and the
tokenized shards' reports: every shard's train and valid dataset, weighted by its language's weight times
its share of the language's tokens, with a table of tokens, expected tokens and epochs per language.

Policies (``n_l`` = characters of language ``l`` after filtering and deduplication):

- ``temperature``: ``p_l ∝ n_l ** alpha`` (alpha = 1: proportional; alpha -> 0: uniform).
- ``unimax`` (Chung et al. 2023, "UniMax: Fairer and more effective language sampling for large-scale
  multilingual pretraining"): split a character budget uniformly over languages, visiting them from
  smallest to largest; each gets at most ``max_epochs * n_l`` and what it cannot use is shared among the
  larger languages still to come. ``p_l`` = its allocation / the sum of allocations.
- ``explicit``: given non-negative weights, normalized to sum 1.

``expected_epochs`` of a language = ``p_l * budget / n_l``: how many times its data is seen when training
reads ``budget`` characters (``sampling.budget_chars``, default the whole corpus); the blend gives the
same in tokens for the run's training budget (steps x global batch x sequence length).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from euroflow.atomic import write_text
from euroflow.data.statistics import read_stats
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json
from euroflow.paths import SPLITS


def _check_sizes(sizes: Mapping[str, int]) -> None:
    if not sizes:
        raise EuroflowError("sampling: no languages given")
    for lang, n in sizes.items():
        if n < 0:
            raise EuroflowError(f"sampling: {lang}: negative size {n}")
    if sum(sizes.values()) == 0:
        raise EuroflowError("sampling: every language has 0 characters after cleaning")


def _normalize(raw: Mapping[str, float]) -> dict[str, float]:
    total = sum(raw.values())
    return {lang: value / total for lang, value in raw.items()}


def temperature_weights(sizes: Mapping[str, int], alpha: float = 0.3) -> dict[str, float]:
    """``p_l ∝ n_l ** alpha``; languages with no data get 0."""
    _check_sizes(sizes)
    if not 0 < alpha <= 1:
        raise EuroflowError(f"sampling.alpha: {alpha} is not in (0, 1]")
    return _normalize({lang: float(n) ** alpha if n > 0 else 0.0 for lang, n in sizes.items()})


def unimax_allocation(sizes: Mapping[str, int], budget: float, max_epochs: float) -> dict[str, float]:
    """Characters allotted to each language by UniMax (they sum to ``budget`` unless every cap binds)."""
    _check_sizes(sizes)
    if budget <= 0:
        raise EuroflowError(f"sampling.budget_chars: {budget} must be positive")
    if max_epochs <= 0:
        raise EuroflowError(f"sampling.unimax_max_epochs: {max_epochs} must be positive")
    order = sorted(sizes, key=lambda lang: (sizes[lang], lang))
    remaining = float(budget)
    allocation: dict[str, float] = {}
    for index, lang in enumerate(order):
        share = remaining / (len(order) - index)
        allocation[lang] = min(share, max_epochs * sizes[lang])
        remaining -= allocation[lang]
    return {lang: allocation[lang] for lang in sizes}


def unimax_weights(sizes: Mapping[str, int], budget: float, max_epochs: float = 4.0) -> dict[str, float]:
    return _normalize(unimax_allocation(sizes, budget, max_epochs))


def explicit_weights(weights: Mapping[str, float], langs: Iterable[str]) -> dict[str, float]:
    langs = list(langs)
    for lang, value in weights.items():
        if value < 0:
            raise EuroflowError(f"sampling.weights.{lang}: negative weight {value}")
        if lang not in langs:
            raise EuroflowError(f"sampling.weights.{lang}: language not in this run's languages")
    missing = [lang for lang in langs if lang not in weights]
    if missing:
        raise EuroflowError(f"sampling.weights.{missing[0]}: missing (policy explicit needs a weight per language)")
    if sum(weights[lang] for lang in langs) <= 0:
        raise EuroflowError("sampling.weights: all weights are 0")
    return _normalize({lang: float(weights[lang]) for lang in langs})


def compute_weights(
    stats: Iterable[Mapping[str, Any]],
    sampling: Mapping[str, Any],
    langs: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The language weights (``weights.json`` content) from per-language statistics and the ``sampling`` section.

    ``langs`` fixes the order and the set of languages (each needs statistics); default: the stats' order.
    """
    by_lang: dict[str, Mapping[str, Any]] = {}
    for item in stats:
        if item["lang"] in by_lang:
            raise EuroflowError(f"sampling: two statistics files for language {item['lang']}")
        by_lang[item["lang"]] = item
    order = list(langs) if langs is not None else list(by_lang)
    for lang in order:
        if lang not in by_lang:
            raise EuroflowError(f"sampling: no statistics for language {lang}")
    extra = [lang for lang in by_lang if lang not in order]
    if extra:
        raise EuroflowError(f"sampling: statistics for {extra[0]}, which is not in this run's languages")
    sizes = {lang: int(by_lang[lang]["chars_out"]) for lang in order}
    _check_sizes(sizes)
    corpus_chars = sum(sizes.values())
    policy = sampling["policy"]
    budget = float(sampling.get("budget_chars") or corpus_chars)
    if policy == "temperature":
        alpha = float(sampling.get("alpha", 0.3))
        weights = temperature_weights(sizes, alpha)
        params: dict[str, Any] = {"alpha": alpha}
    elif policy == "unimax":
        max_epochs = float(sampling.get("unimax_max_epochs", 4))
        weights = unimax_weights(sizes, budget, max_epochs)
        params = {"max_epochs": max_epochs}
    elif policy == "explicit":
        weights = explicit_weights(sampling.get("weights") or {}, order)
        params = {"weights": {lang: sampling["weights"][lang] for lang in order}}
    else:
        raise EuroflowError(f"sampling.policy: unknown policy {policy!r} (temperature, unimax or explicit)")
    params.update({"size_unit": "chars", "budget_chars": int(budget), "corpus_chars": corpus_chars})
    entries = []
    for lang in order:
        n = sizes[lang]
        entries.append(
            {
                "lang": lang,
                "weight": weights[lang],
                "chars": n,
                "docs": int(by_lang[lang]["docs_out"]),
                "natural_share": n / corpus_chars,
                "expected_epochs": weights[lang] * budget / n if n > 0 else None,
            }
        )
    return {"policy": policy, "params": params, "languages": entries}


def _markdown(title: str, intro: str, header: list[str], rows: list[list[str]]) -> str:
    """A titled markdown table; the first column is left-aligned, the others right-aligned."""
    lines = [f"# {title}", "", intro, "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "weights")


def _or_dash(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def weights_markdown(weights: Mapping[str, Any]) -> str:
    return _markdown(
        f"Language weights: {weights['policy']}",
        f"Parameters: {_params_text(weights['params'])}. Sizes are characters after filtering and deduplication; "
        f"expected epochs assume {weights['params']['budget_chars']:,} characters are read in all.",
        ["language", "docs", "chars", "natural share", "weight", "expected epochs"],
        [
            [e["lang"], f"{e['docs']:,}", f"{e['chars']:,}", f"{e['natural_share']:.2%}", f"{e['weight']:.4f}",
             _or_dash(e["expected_epochs"], ".2f")]
            for e in weights["languages"]
        ],
    )


def _write_texts(out_dir: Path, outputs: Mapping[str, str]) -> None:
    for name, content in outputs.items():
        write_text(out_dir / name, content)


def write_weights(
    stats_paths: Iterable[str | os.PathLike],
    sampling: Mapping[str, Any],
    out: str | os.PathLike,
    langs: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Read statistics files, compute the weights, write ``out`` (JSON) and the table beside it (``.md``)."""
    weights = compute_weights([read_stats(p) for p in stats_paths], sampling, langs)
    out = Path(out)
    _write_texts(out.parent, {out.name: json.dumps(weights, indent=2) + "\n", out.with_suffix(".md").name: weights_markdown(weights)})
    return weights


def data_holes(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Languages of the run that a split has no tokens of after filtering and deduplication: the
    language is then missing from that split of the blend (validation loss says nothing about it)."""
    holes = []
    for entry in entries:
        for split, what in (("train", "training"), ("valid", "validation")):
            if not entry[f"tokens_{split}"]:
                holes.append({"lang": entry["lang"], "split": split,
                              "message": f"{entry['lang']}: no {what} tokens after filtering and deduplication "
                                         f"({entry['docs_' + split]} documents in {entry['shards']} shards)"})
    return holes


def compute_blend(
    weights: Mapping[str, Any],
    shard_reports: Mapping[str, Sequence[Mapping[str, Any]]],
    training_tokens: int | None,
    *,
    require_valid: bool = False,
) -> dict[str, Any]:
    """The Megatron blend per split from the language weights and every tokenized shard's report.

    Within a language each shard's dataset is weighted by its share of the language's tokens in that
    split, so a language's weight is the sum over its shards; empty datasets are left out. Expected
    tokens and epochs of a language assume training reads ``training_tokens`` tokens. A language
    with no tokens in a split is listed under ``warnings`` (:func:`data_holes`); with
    ``require_valid`` (``data.require_valid``) one without validation tokens is an error.
    """
    blend: dict[str, list[Any]] = {split: [] for split in SPLITS}
    entries = []
    for entry in weights["languages"]:
        lang, weight = entry["lang"], float(entry["weight"])
        reports = shard_reports.get(lang)
        if not reports:
            raise EuroflowError(f"blend: no tokenized shards for language {lang}")
        tokens = {split: sum(int(r["tokens"][split]) for r in reports) for split in SPLITS}
        for split in SPLITS:
            if weight <= 0 or tokens[split] == 0:
                continue
            for report in reports:
                if report["tokens"][split]:
                    blend[split] += [weight * report["tokens"][split] / tokens[split], report["prefixes"][split]]
        expected = weight * training_tokens if training_tokens else None
        entries.append(
            {
                **entry,
                "shards": sum(int(r.get("shards", 1)) for r in reports),  # a merged report counts its shards
                "docs_train": sum(int(r["docs"]["train"]) for r in reports),
                "docs_valid": sum(int(r["docs"]["valid"]) for r in reports),
                "max_token_id": max((r["max_token_id"] for r in reports if isinstance(r.get("max_token_id"), int)), default=None),
                "tokens_train": tokens["train"],
                "tokens_valid": tokens["valid"],
                "expected_tokens": round(expected) if expected is not None else None,
                "expected_epochs": expected / tokens["train"] if expected is not None and tokens["train"] else None,
            }
        )
    holes = data_holes(entries)
    no_valid = [hole["lang"] for hole in holes if hole["split"] == "valid"]
    if require_valid and no_valid:
        raise EuroflowError(
            f"data.require_valid: {len(no_valid)} languages have no validation tokens ({', '.join(no_valid)}); raise "
            "data.valid_fraction, add shards, or set data.require_valid: false to train without their validation loss"
        )
    for split in SPLITS:
        total = sum(blend[split][0::2])
        if total <= 0:
            raise EuroflowError(f"blend: the {split} split has no tokens in any language with a weight above 0")
        blend[split][0::2] = [w / total for w in blend[split][0::2]]
    return {
        "policy": weights["policy"],
        "params": {**weights["params"], "training_tokens": training_tokens},
        "languages": entries,
        "warnings": [hole["message"] for hole in holes],
        "megatron_blend": blend["train"],
        "megatron_blend_per_split": blend,
    }


def blend_markdown(blend: Mapping[str, Any]) -> str:
    warnings = "".join(f"- **warning:** {w}\n" for w in blend.get("warnings") or [])
    return (warnings + "\n" if warnings else "") + _markdown(
        f"Training blend: {blend['policy']}",
        f"Parameters: {_params_text(blend['params'])}. Tokens are after deduplication, per split; expected tokens "
        f"and epochs assume training reads {blend['params']['training_tokens'] or 0:,} tokens.",
        ["language", "shards", "docs (train)", "tokens (train)", "tokens (valid)", "weight", "expected tokens", "epochs"],
        [
            [e["lang"], str(e["shards"]), f"{e['docs_train']:,}", f"{e['tokens_train']:,}", f"{e['tokens_valid']:,}",
             f"{e['weight']:.4f}", _or_dash(e["expected_tokens"], ","), _or_dash(e["expected_epochs"], ".2f")]
            for e in blend["languages"]
        ],
    )


def per_split_data_args(blend: Mapping[str, Any]) -> dict[str, Any]:
    """Megatron-LM ``--per-split-data-args-path`` content: ``{"train": [w1, p1, ...], "valid": [...], "test": null}``."""
    return {**{split: [str(x) for x in blend["megatron_blend_per_split"][split]] for split in SPLITS}, "test": None}


def write_blend(
    weights_path: str | os.PathLike,
    shard_reports: Mapping[str, Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    training_tokens: int | None,
    *,
    require_valid: bool = False,
) -> dict[str, Any]:
    """Write ``blend.json``, ``blend.md`` and ``per_split_data_args.json`` to ``out_dir``."""
    weights = read_blend(weights_path)
    reports = {lang: [read_json(p, "tokenized shard report") for p in paths] for lang, paths in shard_reports.items()}
    blend = compute_blend(weights, reports, training_tokens, require_valid=require_valid)
    _write_texts(
        Path(out_dir),
        {
            "blend.json": json.dumps(blend, indent=2) + "\n",
            "blend.md": blend_markdown(blend),
            "per_split_data_args.json": json.dumps(per_split_data_args(blend), indent=2) + "\n",
        },
    )
    return blend


def read_blend(path: str | os.PathLike) -> dict[str, Any]:
    """A weights or blend file: ``languages`` with ``lang`` and ``weight`` each."""
    path = Path(path)
    blend = read_json(path, "blend file")
    for index, entry in enumerate(blend.get("languages", [])):
        for key in ("lang", "weight"):
            if key not in entry:
                raise EuroflowError(f"{path}: languages[{index}]: missing field '{key}'")
    if not blend.get("languages"):
        raise EuroflowError(f"{path}: missing or empty field 'languages'")
    return blend
