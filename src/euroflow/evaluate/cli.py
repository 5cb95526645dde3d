"""``euroflow evaluate``: bits per byte, multiple choice, and the report. Explicit input/output paths."""

from __future__ import annotations

import argparse

from euroflow.errors import EuroflowError


def _languages(value: str) -> list[str]:
    from euroflow.languages import resolve

    return resolve("all" if value == "all" else [k.strip() for k in value.split(",") if k.strip()])


def _tasks(value: str) -> list[str]:
    from euroflow.evaluate.multiple_choice import TASK_LANGUAGES

    tasks = [t.strip() for t in value.split(",") if t.strip()]
    for task in tasks:
        if task not in TASK_LANGUAGES:
            raise EuroflowError(f"--tasks: unknown task {task!r}; known: {', '.join(TASK_LANGUAGES)}")
    if not tasks:
        raise EuroflowError("--tasks: empty")
    return tasks


def set_threads(threads: int | None) -> None:
    """Pin torch's CPU threads (e.g. to Snakemake's ``{threads}``): oversubscribed cores slow it down a lot."""
    if threads is None:
        return
    if threads < 1:
        raise EuroflowError(f"--threads={threads}: must be >= 1")
    import torch

    torch.set_num_threads(threads)


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that scores text with a model (shared with ``euroflow quantize quality``)."""
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow evaluate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bpb = sub.add_parser("bpb", help="bits per byte per language on FLORES-200 test")
    bpb.add_argument("--model", required=True, help="Hugging Face Llama directory (with tokenizer.model)")
    bpb.add_argument("--data-root", required=True, help="the multilingual data bundle")
    bpb.add_argument("--languages", default="all", help="'all' or comma-separated keys")
    add_scoring_options(bpb)
    bpb.add_argument("--out", required=True, help="output JSON")

    mc = sub.add_parser("mc", help="multiple-choice accuracy (Belebele, EXAMS, XCOPA)")
    mc.add_argument("--model", required=True)
    mc.add_argument("--data-root", required=True)
    mc.add_argument("--tasks", default="belebele,exams,xcopa")
    mc.add_argument("--languages", default="all", help="'all' or comma-separated keys: only these of each task")
    mc.add_argument("--max-items", type=int, default=None, help="first N items per task and language; 0 = all")
    add_scoring_options(mc)
    mc.add_argument("--out", required=True, help="output JSON")

    report = sub.add_parser("report", help="JSON + Markdown + PNG from bpb/mc results")
    report.add_argument("--bpb", help="bpb JSON")
    report.add_argument("--mc", help="mc JSON")
    report.add_argument("--out-json", required=True)
    report.add_argument("--out-md", required=True)
    report.add_argument("--out-png", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from euroflow.evaluate.report import write_json

    set_threads(getattr(args, "threads", None))

    if args.command == "bpb":
        from euroflow.evaluate.bpb import evaluate_bpb

        result = evaluate_bpb(
            args.model, args.data_root, _languages(args.languages), batch_size=args.batch_size, device=args.device
        )
        write_json(result, args.out)
        print(f"{args.out}: bpb over {len(result['languages'])} languages, macro mean {result['macro_mean_bpb']:.4f}")
    elif args.command == "mc":
        from euroflow.evaluate.multiple_choice import TASK_LANGUAGES, evaluate_tasks

        wanted = set(_languages(args.languages))
        tasks = _tasks(args.tasks)
        per_task = {task: tuple(lang for lang in TASK_LANGUAGES[task] if lang in wanted) for task in tasks}
        result = evaluate_tasks(
            args.model,
            args.data_root,
            [task for task in tasks if per_task[task]],
            languages=per_task,
            max_items=args.max_items or None,
            batch_size=args.batch_size,
            device=args.device,
        )
        write_json(result, args.out)
        for task, per_lang in result["tasks"].items():
            cells = ", ".join(f"{lang} {r['acc']:.3f} (chance {r['chance']:.3f})" for lang, r in per_lang.items())
            print(f"{task}: {cells}")
    elif args.command == "report":
        from euroflow.evaluate.report import write_report

        write_report(args.bpb, args.mc, args.out_json, args.out_md, args.out_png)
        print(f"wrote {args.out_json}, {args.out_md}, {args.out_png}")
    return 0


if __name__ == "__main__":
    import sys

    from euroflow.cli import main as euroflow_main

    sys.exit(euroflow_main(["evaluate", *sys.argv[1:]]))
