"""The evaluation report: one JSON, a Markdown table and a bar chart, each written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from euroflow.atomic import atomic_path, write_text
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json


def read_results(path: str | Path, kind: str, required: tuple[str, ...]) -> dict:
    document = read_json(path, f"{kind} results file")
    for key in required:
        if key not in document:
            raise EuroflowError(f"{path}: missing key {key!r}; not a {kind} results file")
    return document


def build_summary(bpb: dict | None, mc: dict | None, lm_eval: dict | None = None) -> dict:
    """The report JSON: bpb per language vs baseline, MC acc per task/language vs chance (no per-item data),
    and lm-eval's figures per task, beside ours for the same set and language."""
    if bpb is None and mc is None and lm_eval is None:
        raise EuroflowError("report: give at least one of the bpb, mc and lm-eval results")
    summary: dict = {}
    if bpb is not None:
        baseline = bpb["baseline"]["bpb"]
        summary["bpb"] = {
            "model": bpb.get("model"),
            "split": bpb.get("split"),
            "baseline_bpb": baseline,
            "macro_mean_bpb": bpb.get("macro_mean_bpb"),
            "micro_bpb": bpb.get("micro_bpb"),
            "languages": {
                lang: {
                    "bpb": r["bpb"],
                    "vs_baseline": r["bpb"] / baseline,
                    "sentences": r["sentences"],
                    "bytes": r["bytes"],
                    "derived_from": r.get("derived_from"),
                }
                for lang, r in bpb["languages"].items()
            },
        }
    if mc is not None:
        summary["mc"] = {
            "model": mc.get("model"),
            "max_items": mc.get("max_items"),
            "tasks": {
                task: {
                    lang: {key: r[key] for key in ("n", "acc", "acc_norm", "acc_norm_bytes", "chance", "truncated_requests")}
                    for lang, r in per_lang.items()
                }
                for task, per_lang in mc["tasks"].items()
            },
        }
    if lm_eval is not None:
        summary["lm_eval"] = lm_eval_summary(lm_eval, mc)
    return summary


def lm_eval_summary(lm_eval: dict, mc: dict | None) -> dict:
    """``{task: {metric: value, ..., "euroflow": {metric: ours}}}``: lm-eval's point figures (not the
    stderr ones) and, for the shipped multiple-choice tasks, our scorer's on the same set and language."""
    from euroflow.evaluate.harness import TAG

    tasks = {}
    for name, figures in lm_eval["results"].items():
        row = {key.split(",")[0]: value for key, value in figures.items()
               if "," in key and "_stderr" not in key and isinstance(value, (int, float))}
        config = (lm_eval.get("configs") or {}).get(name, {})
        language = (config.get("dataset_kwargs") or {}).get("language")
        task_set = name.split("_")[1] if name.startswith(f"{TAG}_") and language else None
        ours = ((mc or {}).get("tasks", {}).get(task_set) or {}).get(language) if task_set else None
        if ours is not None:
            row["euroflow"] = {"acc": ours["acc"], "acc_norm": ours["acc_norm"], "n": ours["n"]}
        row["n"] = (lm_eval.get("n-samples") or {}).get(name, {}).get("effective")
        tasks[name] = row
    return {"lm_eval_version": lm_eval.get("lm_eval_version"), "limit": (lm_eval.get("config") or {}).get("limit"), "tasks": tasks}


def markdown(summary: dict) -> str:
    lines = ["# Evaluation report", ""]
    if "bpb" in summary:
        b = summary["bpb"]
        lines += [
            f"## Bits per byte, FLORES-200 `{b['split']}` (lower is better)",
            "",
            f"Model: `{b['model']}`. Each sentence is scored as `[bos] + ids + [eos]`. "
            f"Baseline: a uniform distribution over byte values needs {b['baseline_bpb']:g} bits per byte.",
            "",
            "| language | sentences | bytes | bpb | vs 8-bit baseline |",
            "|---|---:|---:|---:|---:|",
        ]
        derived = []
        for lang, r in b["languages"].items():
            mark = " *" if r.get("derived_from") else ""
            if r.get("derived_from"):
                derived.append(f"{lang}: derived from {r['derived_from']}")
            lines.append(f"| {lang}{mark} | {r['sentences']} | {r['bytes']} | {r['bpb']:.4f} | {100 * r['vs_baseline']:.1f}% |")
        lines.append(f"| **macro mean** | | | {b['macro_mean_bpb']:.4f} | {100 * b['macro_mean_bpb'] / b['baseline_bpb']:.1f}% |")
        lines.append("")
        if derived:
            lines += ["\\* " + "; ".join(derived) + " (FLORES has no Serbian Latin file).", ""]
    if "mc" in summary:
        m = summary["mc"]
        cap = f" (first {m['max_items']} items per task and language)" if m.get("max_items") else ""
        lines += [
            f"## Multiple choice, zero-shot log-likelihood{cap}",
            "",
            "acc: highest log-likelihood; acc_norm: log-likelihood / characters of the choice (lm-eval); "
            "acc_norm_bytes: / UTF-8 bytes. Chance: mean of 1/choices.",
            "",
            "| task | language | items | acc | acc_norm | acc_norm_bytes | chance | acc - chance |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for task, per_lang in m["tasks"].items():
            for lang, r in per_lang.items():
                lines.append(
                    f"| {task} | {lang} | {r['n']} | {r['acc']:.3f} | {r['acc_norm']:.3f} | {r['acc_norm_bytes']:.3f} "
                    f"| {r['chance']:.3f} | {r['acc'] - r['chance']:+.3f} |"
                )
        lines.append("")
    if "lm_eval" in summary:
        lines += _lm_eval_markdown(summary["lm_eval"])
    if "learning_curve" in summary:
        from euroflow.evaluate.during_training import curve_markdown

        lines += [curve_markdown(summary["learning_curve"])]
    return "\n".join(lines)


def _lm_eval_markdown(section: dict) -> list[str]:
    cap = f" (first {section['limit']:g} documents per task)" if section.get("limit") else ""
    lines = [
        f"## lm-evaluation-harness {section.get('lm_eval_version') or ''}{cap}",
        "",
        "lm-eval's own evaluator on the same sets (results in lm-eval's JSON format). FLORES is "
        "lm-eval's rolling log-likelihood: each sentence after BOS, without EOS (and with a limit, the first "
        "sentences only), so its bits per byte are not the figure of the table above. euroflow: our scorer, "
        "shown where it scored the same items.",
        "",
        "| task | docs | acc | acc_norm | bits_per_byte | euroflow acc | euroflow acc_norm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value):
        return "" if value is None else f"{value:.4f}"

    for name, row in section["tasks"].items():
        ours = row.get("euroflow") or {}
        # our mc rule may cap at other item counts; compare only like with like
        same_items = ours.get("n") == row.get("n")
        lines.append(
            f"| {name} | {row.get('n') or ''} | {cell(row.get('acc'))} | {cell(row.get('acc_norm'))} | {cell(row.get('bits_per_byte'))} "
            f"| {cell(ours.get('acc')) if same_items else ''} | {cell(ours.get('acc_norm')) if same_items else ''} |"
        )
    lines.append("")
    return lines


def chart(summary: dict, out_png: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [key for key in ("bpb", "mc") if key in summary] or ["lm_eval"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 4.5 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "bpb":
            b = summary["bpb"]
            langs = list(b["languages"])
            ax.bar(langs, [b["languages"][k]["bpb"] for k in langs], color="#3b6ea8", label="model")
            ax.axhline(b["baseline_bpb"], color="#b03a2e", linestyle="--", label="uniform bytes (8 bits)")
            ax.set_ylabel("bits per byte (lower is better)")
            ax.set_title(f"FLORES-200 {b['split']}: bits per byte")
            ax.tick_params(axis="x", rotation=90)
        elif panel == "lm_eval":
            rows = {name: row for name, row in summary["lm_eval"]["tasks"].items() if "acc" in row}
            ax.bar(list(rows), [row["acc"] for row in rows.values()], color="#3b8a5a", label="acc")
            ax.tick_params(axis="x", rotation=90)
            ax.set_ylim(0, 1)
            ax.set_ylabel("accuracy")
            ax.set_title("lm-evaluation-harness (zero-shot)")
        else:
            m = summary["mc"]
            labels, accs, chances = [], [], []
            for task, per_lang in m["tasks"].items():
                for lang, r in per_lang.items():
                    labels.append(f"{task}:{lang}")
                    accs.append(r["acc"])
                    chances.append(r["chance"])
            positions = range(len(labels))
            ax.bar(positions, accs, color="#3b8a5a", label="acc")
            ax.scatter(positions, chances, color="#b03a2e", marker="_", s=400, linewidths=2, label="chance", zorder=3)
            ax.set_xticks(list(positions), labels, rotation=90)
            ax.set_ylim(0, 1)
            ax.set_ylabel("accuracy")
            ax.set_title("Multiple choice (zero-shot log-likelihood)")
        ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(
    bpb_json: str | Path | None,
    mc_json: str | Path | None,
    out_json: str | Path,
    out_md: str | Path,
    out_png: str | Path,
    *,
    lm_eval_json: str | Path | None = None,
    learning_curve_json: str | Path | None = None,
) -> dict:
    bpb = read_results(bpb_json, "bpb", ("languages", "baseline")) if bpb_json else None
    mc = read_results(mc_json, "multiple-choice", ("tasks",)) if mc_json else None
    lm_eval = read_results(lm_eval_json, "lm-eval", ("results", "configs")) if lm_eval_json else None
    summary = build_summary(bpb, mc, lm_eval)
    if learning_curve_json:
        summary["learning_curve"] = read_results(learning_curve_json, "learning-curve", ("steps", "languages"))
    write_json(summary, out_json)
    write_text(out_md, markdown(summary))
    chart(summary, out_png)
    return summary


def write_json(document: dict, out: str | Path) -> None:
    write_text(out, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
