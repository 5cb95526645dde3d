"""``euroflow train``: pretrain a model on a blend, export its checkpoint to Hugging Face."""

from __future__ import annotations

import argparse
import json
import os
import sys

from euroflow.errors import EuroflowError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="euroflow train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    pre = sub.add_parser("pretrain", help="train (or resume) with megatron-core; writes checkpoints, train_log.jsonl, loss_curve.png")
    pre.add_argument("--config", required=True, help="run config (YAML)")
    pre.add_argument("--blend", required=True, help="blend.json from data sampling")
    pre.add_argument("--tokenizer", required=True, help="tokenizer directory (tokenizer_meta.json)")
    pre.add_argument("--out", required=True, help="training output directory")
    pre.add_argument("--stop-after-step", type=int, default=None, help="stop after this step (resume later)")
    slurm = pre.add_argument_group("on a Slurm site: submit the training job through submitit and wait for it")
    slurm.add_argument("--site", default=None, help="sites/<name>.yaml with a Slurm scheduler (default: train here)")
    slurm.add_argument("--nodes", type=int, default=1, help="nodes per training job")
    slurm.add_argument("--minutes", type=int, default=60, help="walltime of each allocation; longer runs are requeued")
    slurm.add_argument("--partition", default=None, help="partition (default: the site's GPU partition)")
    slurm.add_argument("--qos", default=None, help="QOS (default: the site's for that partition)")
    slurm.add_argument("--max-requeues", type=int, default=20, help="requeues at the walltime before giving up")
    slurm.add_argument("--signal-delay", type=int, default=None, help="seconds between USR2 and the walltime (default 600)")
    slurm.add_argument("--allocations", default=None, help="append one JSON line per Slurm allocation here (provenance)")

    exp = sub.add_parser("export-hf", help="latest checkpoint -> LlamaForCausalLM directory, logits-checked")
    exp.add_argument("--config", required=True, help="run config (YAML)")
    exp.add_argument("--checkpoints", required=True, help="checkpoint directory (with latest_checkpointed_iteration.txt)")
    exp.add_argument("--tokenizer", required=True, help="tokenizer directory, copied into the export")
    exp.add_argument("--out", required=True, help="Hugging Face model directory to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from euroflow import config as run_config

    try:
        config = run_config.load(args.config)
        if args.command == "pretrain":
            if args.site:
                from euroflow.train.launcher import launch

                resources = {"nodes": args.nodes, "runtime": args.minutes, "slurm_partition": args.partition, "qos": args.qos}
                result = launch(config, args.blend, args.tokenizer, args.out, site_name=args.site, resources=resources,
                                allocations=args.allocations, max_requeues=args.max_requeues, signal_delay_s=args.signal_delay)
            else:
                from euroflow.train.loop import pretrain

                result = pretrain(config, args.blend, args.tokenizer, args.out, stop_after_step=args.stop_after_step)
        else:
            from euroflow.train.export_hf import export_hf

            result = export_hf(config, args.checkpoints, args.tokenizer, args.out)
    except EuroflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
