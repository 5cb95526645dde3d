"""A tokenizer sampling policy that aims at parity (``tokenizer.sampling: parity``).

Round 0 trains on the blend's weights (the plain weighted tokenizer). Each further round measures
parity (tokens / tokens of English over the same FLORES ``dev`` sentences, ``tokenizer.parity``)
and multiplies each language's share by its parity over the geometric mean of all parities, so the
most expensive languages get more of the sample and the cheapest less; a share stays within
``max_factor`` times (or 1/``max_factor``) the blend's weight. It stops when max/min parity on dev is
at most ``target`` or after ``rounds`` trainings, and keeps the round with the lowest max/min among
those where no language is worse than ``tolerance`` times its plain-weighted parity (round 0
qualifies, so the result is never worse than the plain tokenizer on dev). FLORES ``test`` (devtest)
is never used to choose: the report compares the plain weighted, the natural-distribution (shares
proportional to the text available) and the chosen tokenizer on it.

The sample is drawn once, a pool of ``max_factor`` times each language's share, and every round
takes its characters from the pool, so the crawl shards are read once whatever the rounds. A
hand-written loop: no library offers parity-targeted sampling for SentencePiece.
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from euroflow.errors import EuroflowError

REPORT_FILE = "parity_sampling.json"  # in the tokenizer directory
TUNING_SPLIT = "dev"
REPORT_SPLIT = "test"


def spread(parity: Mapping[str, float]) -> float:
    """max/min parity: 1.0 is every language paying the same."""
    return max(parity.values()) / min(parity.values())


def next_multipliers(multipliers: Mapping[str, float], parity: Mapping[str, float], max_factor: float) -> dict[str, float]:
    """Each language's share multiplier times its parity over the geometric mean parity, within [1/max_factor, max_factor]."""
    mean = math.exp(sum(math.log(p) for p in parity.values()) / len(parity))
    return {lang: min(max_factor, max(1.0 / max_factor, m * parity[lang] / mean)) for lang, m in multipliers.items()}


def shares(weights: Mapping[str, float], multipliers: Mapping[str, float]) -> dict[str, float]:
    raw = {lang: weights[lang] * multipliers[lang] for lang in weights}
    total = sum(raw.values())
    return {lang: value / total for lang, value in raw.items()}


def admissible(parity: Mapping[str, float], plain: Mapping[str, float], tolerance: float) -> bool:
    return all(parity[lang] <= tolerance * plain[lang] for lang in plain)


def choose(rounds: list[dict], tolerance: float) -> int:
    """The round with the lowest spread among the admissible ones (round 0, the plain tokenizer, always is)."""
    plain = rounds[0]["dev_parity"]
    candidates = [i for i, r in enumerate(rounds) if admissible(r["dev_parity"], plain, tolerance)]
    return min(candidates, key=lambda i: (spread(rounds[i]["dev_parity"]), i))


def take(pool: list[str], chars: int, seed: str) -> list[str]:
    """About ``chars`` characters of whole lines from ``pool``: shuffled once (seeded), whole passes then a prefix."""
    if chars <= 0 or not pool:
        return []
    order = list(pool)
    random.Random(seed).shuffle(order)
    size = sum(len(line) for line in order)
    passes, rest = divmod(chars, size)
    out = order * int(passes)
    taken = 0
    for line in order:
        if taken >= rest:
            break
        out.append(line)
        taken += len(line)
    return out


def parity_of(tokenizer_dir, data_root, langs: list[str], split: str) -> dict[str, float]:
    from euroflow.tokenizer.parity import parity_report

    report = parity_report(tokenizer_dir, data_root, langs, splits=[split])
    return {lang: row["parity"] for lang, row in report["languages"].items()}


def train_for_parity(
    *,
    pool: Mapping[str, list[str]],
    weights: Mapping[str, float],
    sample_chars: int,
    seed: int,
    data_root,
    settings: Mapping[str, Any],
    train: Callable[[Path, list[str]], None],
    natural: Callable[[], list[str]] | None,
    out_dir: Path,
) -> dict[str, Any]:
    """Run the rounds, train the chosen sample into ``out_dir``; the report (rounds, choice, devtest comparison).

    ``train(directory, texts)`` trains a tokenizer into ``directory``; ``natural()`` gives the
    natural-distribution sample (None: not compared).
    """
    from euroflow.data.flores import flores_file

    langs = list(weights)
    for lang in ["en", *langs]:
        if not flores_file(data_root, lang).is_file():
            raise EuroflowError(f"tokenizer.sampling: parity needs FLORES {TUNING_SPLIT} of every language; {flores_file(data_root, lang)} is missing")
    rounds_budget = int(settings["rounds"])
    target, max_factor, tolerance = float(settings["target"]), float(settings["max_factor"]), float(settings["tolerance"])
    multipliers = {lang: 1.0 for lang in langs}
    rounds: list[dict] = []

    def sample(current: Mapping[str, float]) -> tuple[list[str], dict[str, int]]:
        per_language = {lang: take(pool[lang], round(current[lang] * sample_chars), f"{seed}:{lang}") for lang in langs}
        texts = [line for lang in langs for line in per_language[lang]]
        random.Random(seed).shuffle(texts)
        return texts, {lang: sum(len(line) for line in lines) for lang, lines in per_language.items()}

    with tempfile.TemporaryDirectory(prefix="euroflow-tokenizer-rounds-") as scratch:
        scratch = Path(scratch)
        for index in range(rounds_budget):
            current = shares(weights, multipliers)
            directory = scratch / f"round{index}"
            directory.mkdir()
            texts, chars = sample(current)
            train(directory, texts)
            dev = parity_of(directory, data_root, langs, TUNING_SPLIT)
            rounds.append({"round": index, "shares": current, "sampled_chars": chars, "dev_parity": dev, "dev_spread": spread(dev)})
            if spread(dev) <= target:
                break
            multipliers = next_multipliers(multipliers, dev, max_factor)
        chosen = choose(rounds, tolerance)
        for path in (scratch / f"round{chosen}").iterdir():
            (out_dir / path.name).write_bytes(path.read_bytes())
        compared = {"plain_weighted": scratch / "round0", "parity": out_dir}
        if natural is not None:
            (scratch / "natural").mkdir()
            train(scratch / "natural", natural())
            compared["natural"] = scratch / "natural"
        devtest = {name: parity_of(directory, data_root, langs, REPORT_SPLIT) for name, directory in compared.items()}
    plain = devtest["plain_weighted"]
    return {
        "policy": "parity",
        "settings": {"rounds": rounds_budget, "target": target, "max_factor": max_factor, "tolerance": tolerance},
        "tuned_on": f"FLORES {TUNING_SPLIT}",
        "rounds": rounds,
        "chosen_round": chosen,
        "shares": rounds[chosen]["shares"],
        "devtest": {
            "split": f"FLORES {REPORT_SPLIT} (devtest), never used to choose",
            "parity": devtest,
            "spread": {name: spread(values) for name, values in devtest.items()},
            "worst_vs_plain": max(devtest["parity"][lang] / plain[lang] for lang in langs),
            "target_met": spread(devtest["parity"]) <= target,
            "tolerance_met": admissible(devtest["parity"], plain, tolerance),
        },
    }


def report_markdown(report: Mapping[str, Any]) -> list[str]:
    """The comparison table for the parity report (FLORES devtest)."""
    devtest = report["devtest"]
    names = [n for n in ("plain_weighted", "natural", "parity") if n in devtest["parity"]]
    lines = [
        f"## Sampling for parity: chosen round {report['chosen_round']} of {len(report['rounds'])} "
        f"(tuned on {report['tuned_on']})",
        "",
        f"Parity on {devtest['split']}: max/min "
        + ", ".join(f"{name} {devtest['spread'][name]:.3f}" for name in names)
        + f" (target {report['settings']['target']:g}: {'met' if devtest['target_met'] else 'not met'}); "
        f"worst language against its plain-weighted parity {devtest['worst_vs_plain']:.3f}x "
        f"(limit {report['settings']['tolerance']:g}: {'met' if devtest['tolerance_met'] else 'not met'}).",
        "",
        "| language | " + " | ".join(names) + " | share (blend -> chosen) |",
        "|---|" + "---:|" * len(names) + "---:|",
    ]
    first, chosen = report["rounds"][0]["shares"], report["shares"]
    for lang in chosen:
        cells = " | ".join(f"{devtest['parity'][name][lang]:.3f}" for name in names)
        lines.append(f"| {lang} | {cells} | {first[lang]:.4f} -> {chosen[lang]:.4f} |")
    lines.append("")
    return lines
