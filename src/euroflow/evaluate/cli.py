"""``euroflow evaluate``: bits per byte, multiple choice, and the report. Explicit input/output paths."""

from __future__ import annotations

import argparse

from euroflow.errors import EuroflowError

from euroflow.evaluate.harness import SHIPPED_TASKS as HARNESS_SETS


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


def _sets(value: str, *, allow_empty: bool = False) -> list[str]:
    sets = [t.strip() for t in value.split(",") if t.strip()]
    for name in sets:
        if name not in HARNESS_SETS:
            raise EuroflowError(f"--sets: unknown set {name!r}; known: {', '.join(HARNESS_SETS)}")
    if not sets and not allow_empty:
        raise EuroflowError("--sets: empty")
    return sets


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

    tasks = sub.add_parser("lm-eval-tasks", help="lm-evaluation-harness task YAML for the bundle's sets (offline)")
    tasks.add_argument("--data-root", required=True)
    tasks.add_argument("--sets", default=",".join(HARNESS_SETS), help=f"comma-separated, of {','.join(HARNESS_SETS)}")
    tasks.add_argument("--languages", default="all", help="'all' or comma-separated keys")
    tasks.add_argument("--out-dir", required=True, help="a directory for lm_eval --include_path")

    harness = sub.add_parser("lm-eval", help="lm-evaluation-harness's own evaluator on the bundle's sets (and local tasks)")
    harness.add_argument("--model", required=True, help="Hugging Face Llama directory")
    harness.add_argument("--data-root", required=True)
    harness.add_argument("--sets", default=",".join(HARNESS_SETS), help=f"comma-separated, of {','.join(HARNESS_SETS)}; '' for none")
    harness.add_argument("--languages", default="all", help="multiple-choice languages: 'all' or comma-separated keys")
    harness.add_argument("--flores-languages", default=None, help="FLORES languages (default: --languages)")
    harness.add_argument("--include-path", action="append", default=[], help="a directory of local lm-eval task YAML (repeatable)")
    harness.add_argument("--extra-tasks", default="", help="comma-separated lm-eval task, tag or group names from --include-path")
    harness.add_argument("--max-items", type=int, default=0, help="lm-eval's --limit: first N documents per task; 0 = all")
    add_scoring_options(harness)
    harness.add_argument("--tasks-dir", required=True, help="where the task YAML of the bundle's sets is written")
    harness.add_argument("--out", required=True, help="lm-eval results JSON")

    ckpt = sub.add_parser("checkpoint", help="bpb per language of a training checkpoint (evaluation during training)")
    ckpt.add_argument("--config", required=True, help="run config (the model and training sections)")
    ckpt.add_argument("--checkpoint", required=True, help="an iter_* checkpoint directory")
    ckpt.add_argument("--tokenizer", required=True, help="tokenizer directory")
    ckpt.add_argument("--data-root", required=True)
    ckpt.add_argument("--languages", default="all")
    ckpt.add_argument("--max-sentences", type=int, default=100, help="the first N FLORES test sentences per language")
    ckpt.add_argument("--remove-checkpoint", action="store_true", help="remove --checkpoint afterwards (a snapshot made for this)")
    add_scoring_options(ckpt)
    ckpt.add_argument("--out", required=True, help="output JSON")

    curve = sub.add_parser("learning-curve", help="bpb per language against the step, from the checkpoint evaluations")
    curve.add_argument("--evaluations", required=True, help="the directory of iter_*.json (train/evaluations)")
    curve.add_argument("--run-name", default="")
    curve.add_argument("--out-json", required=True)
    curve.add_argument("--out-md", required=True)
    curve.add_argument("--out-png", required=True)

    report = sub.add_parser("report", help="JSON + Markdown + PNG from bpb/mc results")
    report.add_argument("--bpb", help="bpb JSON")
    report.add_argument("--mc", help="mc JSON")
    report.add_argument("--lm-eval", help="lm-eval results JSON")
    report.add_argument("--learning-curve", help="learning-curve JSON")
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
    elif args.command == "lm-eval-tasks":
        from euroflow.evaluate.harness import write_task_configs

        names = write_task_configs(args.data_root, _sets(args.sets), _languages(args.languages), args.out_dir)
        print(f"{args.out_dir}: {len(names)} lm-eval tasks (lm_eval --include_path {args.out_dir} --tasks euroflow)")
    elif args.command == "lm-eval":
        from euroflow.evaluate.harness import evaluate_harness, task_configs, write_results, write_task_configs

        sets = _sets(args.sets, allow_empty=True)
        languages = _languages(args.languages)
        flores_languages = _languages(args.flores_languages) if args.flores_languages else languages
        configs = {}
        if sets:
            mc_sets = [s for s in sets if s != "flores"]
            configs = task_configs(args.data_root, mc_sets, languages) if mc_sets else {}
            if "flores" in sets:
                configs.update(task_configs(args.data_root, ["flores"], flores_languages))
        write_task_configs(args.data_root, sets, languages, args.tasks_dir, configs=configs)
        extra = [t.strip() for t in args.extra_tasks.split(",") if t.strip()]
        result = evaluate_harness(args.model, args.tasks_dir, [*configs, *extra], include_paths=args.include_path,
                                  limit=args.max_items or None, batch_size=args.batch_size, device=args.device)
        write_results(result, args.out)
        print(f"{args.out}: lm-eval results of {len(result['results'])} tasks")
    elif args.command == "checkpoint":
        import shutil

        from euroflow import config as run_config
        from euroflow.evaluate.during_training import evaluate_checkpoint

        try:
            result = evaluate_checkpoint(run_config.load(args.config), args.checkpoint, args.tokenizer, args.data_root,
                                         _languages(args.languages), max_sentences=args.max_sentences, out=args.out,
                                         batch_size=args.batch_size, device=args.device)
        finally:
            if args.remove_checkpoint:
                shutil.rmtree(args.checkpoint, ignore_errors=True)
        print(f"{args.out}: step {result['step']}, macro mean bpb {result['macro_mean_bpb']:.4f} over {len(result['languages'])} languages")
    elif args.command == "learning-curve":
        from euroflow.evaluate.during_training import learning_curve

        summary = learning_curve(args.evaluations, args.out_json, args.out_md, args.out_png, run_name=args.run_name)
        print(f"{args.out_json}: {len(summary['steps'])} checkpoints, {len(summary['languages'])} languages")
    elif args.command == "report":
        from euroflow.evaluate.report import write_report

        write_report(args.bpb, args.mc, args.out_json, args.out_md, args.out_png, lm_eval_json=args.lm_eval,
                     learning_curve_json=args.learning_curve)
        print(f"wrote {args.out_json}, {args.out_md}, {args.out_png}")
    return 0


if __name__ == "__main__":
    import sys

    from euroflow.cli import main as euroflow_main

    sys.exit(euroflow_main(["evaluate", *sys.argv[1:]]))
