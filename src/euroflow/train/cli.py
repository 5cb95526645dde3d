"""``euroflow train``: pretrain a model on a blend, export its checkpoint to Hugging Face."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from euroflow.errors import EuroflowError, exit_status


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


_positive, _non_negative = _count(1), _count(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    pre = sub.add_parser("pretrain", help="train (or resume) with megatron-core; writes checkpoints, progress.jsonl, then train_log.jsonl and loss_curve.png")
    pre.add_argument("--config", required=True, help="run config (YAML)")
    pre.add_argument("--blend", required=True, help="blend.json from data sampling")
    pre.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer_meta.json)")
    pre.add_argument("--out", required=True, help="training output directory")
    pre.add_argument("--stop-after-step", type=_positive, default=None, help="stop after this step (resume later)")
    pre.add_argument("--stop-wait", type=_positive, default=None, metavar="SECONDS",
                     help="how long to wait for a trainer still running on --out to checkpoint and stop (default 900)")
    slurm = pre.add_argument_group("on a Slurm site: submit the training job through submitit and wait for it")
    slurm.add_argument("--site", default=None, help="sites/<name>.yaml with a Slurm scheduler (default: train here)")
    slurm.add_argument("--nodes", type=_positive, default=1, help="nodes per training job")
    slurm.add_argument("--minutes", type=_positive, default=60, help="walltime of each allocation; longer runs are requeued")
    slurm.add_argument("--partition", default=None, help="partition (default: the site's GPU partition)")
    slurm.add_argument("--qos", default=None, help="QOS (default: the site's for that partition)")
    slurm.add_argument("--max-requeues", type=_non_negative, default=200, help="requeues at the walltime before giving up (a backstop)")
    slurm.add_argument("--max-stalled", type=_positive, default=3,
                       help="not requeued after this many allocations in a row without a new training step")
    slurm.add_argument("--max-node-failures", type=_non_negative, default=3,
                       help="allocations ended by a bad node (NODE_FAIL, NCCL/RCCL timeout, GPU hardware error) submitted again "
                            "without the nodes Slurm marks down or drained (default 3)")
    slurm.add_argument("--signal-delay", type=_positive, default=None, help="seconds between USR2 and the walltime (default 600)")
    slurm.add_argument("--allocations", default=None, help="append one JSON line per Slurm allocation here (provenance)")

    exp = sub.add_parser("export-hf", help="final checkpoint -> LlamaForCausalLM directory, logits-checked")
    exp.add_argument("--config", required=True, help="run config (YAML)")
    exp.add_argument("--checkpoints", required=True, help="a checkpoint (iter_* directory) or a checkpoint root (its newest)")
    exp.add_argument("--tokenizer", required=True, help="tokenizer directory, copied into the export")
    exp.add_argument("--out", required=True, help="Hugging Face model directory to write")
    return parser


def _pretrain(args: argparse.Namespace, config: dict) -> dict:
    if args.site:
        from euroflow.train.launcher import evaluation_starter, launch

        resources = {"nodes": args.nodes, "runtime": args.minutes, "slurm_partition": args.partition, "qos": args.qos}
        starter = None
        if config["evaluation"]["during_training"]["every_n_checkpoints"]:
            starter = evaluation_starter(args.site, resources, args.out, config["run"]["name"])
        with _evaluations(args, config, starter):
            return launch(config, args.blend, args.tokenizer, args.out, site_name=args.site, resources=resources,
                          allocations=args.allocations, max_requeues=args.max_requeues, max_stalled=args.max_stalled,
                          max_node_failures=args.max_node_failures, signal_delay_s=args.signal_delay)
    from euroflow.train.guard import DEFAULT_STOP_WAIT_S, trainer_lock
    from euroflow.train.loop import children_die_with_me, pretrain

    children_die_with_me()
    with trainer_lock(args.out, stop_wait_s=args.stop_wait or DEFAULT_STOP_WAIT_S), _evaluations(args, config):
        return pretrain(config, args.blend, args.tokenizer, args.out, stop_after_step=args.stop_after_step)


def _evaluations(args: argparse.Namespace, config: dict, starter=None):
    """Evaluation during training (evaluation.during_training): each due checkpoint by its own process
    (on a Slurm site, its own job)."""
    from euroflow.config import data_root
    from euroflow.evaluate.during_training import EVALUATIONS_DIR, CheckpointEvaluations

    return CheckpointEvaluations(config_path=args.config, config=config, out_dir=Path(args.out) / EVALUATIONS_DIR,
                                 tokenizer=args.tokenizer, data_root=str(data_root(config)), starter=starter)


def _run(args: argparse.Namespace) -> int:
    from euroflow import config as run_config

    config = run_config.load(args.config)
    if args.command == "export-hf":
        from euroflow.train.export_hf import export_hf

        result = export_hf(config, args.checkpoints, args.tokenizer, args.out)
    else:
        result = _pretrain(args, config)
        if result.get("stopped"):
            raise EuroflowError(
                f"{args.out}: training stopped at step {result['last_step']} because another trainer asked it to "
                f"(STOP); its checkpoint is {result['checkpoint']}"
            )
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return exit_status(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
