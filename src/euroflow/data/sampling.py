"""Language sampling weights for the training blend, measured in characters.

Policies (``n_l`` = characters of language ``l`` after cleaning):

- ``temperature``: ``p_l ∝ n_l ** alpha`` (alpha = 1: proportional; alpha -> 0: uniform).
- ``unimax`` (Chung et al. 2023, "UniMax: Fairer and more effective language sampling for large-scale
  multilingual pretraining"): split a character budget uniformly over languages, visiting them from
  smallest to largest; each gets at most ``max_epochs * n_l`` and what it cannot use is shared among the
  larger languages still to come. ``p_l`` = its allocation / the sum of allocations.
- ``explicit``: given non-negative weights, normalized to sum 1.

``expected_epochs`` of a language = ``p_l * budget / n_l``: how many times its data is seen when training
reads ``budget`` characters (``sampling.budget_chars``, default the whole cleaned corpus).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from euroflow.atomic import atomic_path
from euroflow.data.clean import read_stats
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json


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


def compute_blend(
    stats: Iterable[Mapping[str, Any]],
    sampling: Mapping[str, Any],
    prefix_dir: str,
    langs: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The blend (``blend.json`` content) from per-language cleaning statistics and the ``sampling`` section.

    ``langs`` fixes the order and the set of languages (each needs statistics); default: the stats' order.
    Languages with weight 0 stay in ``languages`` but are left out of ``megatron_blend``.
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
    prefix_dir = str(prefix_dir).rstrip("/") or "/"
    entries = []
    for lang in order:
        n = sizes[lang]
        entries.append(
            {
                "lang": lang,
                "prefix": f"{prefix_dir}/{lang}",
                "weight": weights[lang],
                "chars": n,
                "docs": int(by_lang[lang]["docs_out"]),
                "natural_share": n / corpus_chars,
                "expected_epochs": weights[lang] * budget / n if n > 0 else None,
            }
        )
    megatron_blend: list[Any] = []
    for entry in entries:
        if entry["weight"] > 0:
            megatron_blend += [entry["weight"], entry["prefix"]]
    return {"policy": policy, "params": params, "languages": entries, "megatron_blend": megatron_blend}


def blend_markdown(blend: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in blend["params"].items() if k != "weights")
    lines = [
        f"# Training blend: {blend['policy']}",
        "",
        f"Parameters: {params}. Sizes are characters after cleaning; expected epochs assume training reads "
        f"{blend['params']['budget_chars']:,} characters in all.",
        "",
        "| language | docs | chars | natural share | weight | expected epochs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in blend["languages"]:
        epochs = "–" if e["expected_epochs"] is None else f"{e['expected_epochs']:.2f}"
        lines.append(
            f"| {e['lang']} | {e['docs']:,} | {e['chars']:,} | {e['natural_share']:.2%} | {e['weight']:.4f} | {epochs} |"
        )
    return "\n".join(lines) + "\n"


def data_args_text(blend: Mapping[str, Any]) -> str:
    """Megatron-LM ``--data-args-path`` content: ``w1 prefix1 w2 prefix2 ...`` on one line."""
    return " ".join(repr(item) if isinstance(item, float) else str(item) for item in blend["megatron_blend"]) + "\n"


def write_blend(
    stats_paths: Iterable[str | os.PathLike],
    sampling: Mapping[str, Any],
    prefix_dir: str,
    out_dir: str | os.PathLike,
    langs: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Read statistics files, compute the blend, write ``blend.json``, ``blend.md``, ``data_args.txt`` to ``out_dir``."""
    blend = compute_blend([read_stats(p) for p in stats_paths], sampling, prefix_dir, langs)
    out_dir = Path(out_dir)
    outputs = {
        "blend.json": json.dumps(blend, indent=2) + "\n",
        "blend.md": blend_markdown(blend),
        "data_args.txt": data_args_text(blend),
    }
    for name, content in outputs.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(content, encoding="utf-8")
    return blend


def read_blend(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    blend = read_json(path, "blend file")
    for index, entry in enumerate(blend.get("languages", [])):
        for key in ("lang", "weight"):
            if key not in entry:
                raise EuroflowError(f"{path}: languages[{index}]: missing field '{key}'")
    if not blend.get("languages"):
        raise EuroflowError(f"{path}: missing or empty field 'languages'")
    return blend
