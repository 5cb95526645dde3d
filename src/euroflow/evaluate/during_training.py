"""Evaluation during training: every ``evaluation.during_training.every_n_checkpoints``-th checkpoint is
evaluated (bits per byte per language on FLORES test) by its own process while training goes on, and
the learning curve per language is drawn once training is done.

Right after saving a due checkpoint, the trainer's rank 0 makes a snapshot of it out of hard links
(``train/evaluations/.snapshots/``), so the trainer's rotation (``training.keep_checkpoints``) cannot
remove it before it is evaluated. While ``euroflow train pretrain`` trains (or, on a Slurm site, waits
for its training job), a watcher thread of the command looks for new snapshots every few seconds and
starts ``euroflow evaluate checkpoint`` on each: on this machine as a separate process at low
priority with one thread, on a Slurm site as its own one-task job with one GPU
(``launcher.evaluation_starter``). It exports the snapshot to Hugging Face format (with the export's
own logit check against Megatron), scores it, and removes the snapshot. Results:
``train/evaluations/iter_NNNNNNN.json`` (and ``.log``); training state like the checkpoints, not rule
outputs, so a rerun of pretrain never removes them. The command waits for the last evaluations
before it returns, so ``learning_curve`` finds them all.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from euroflow.atomic import atomic_path, write_text
from euroflow.errors import EuroflowError
from euroflow.jsonfile import read_json

EVALUATIONS_DIR = "evaluations"
SNAPSHOTS_DIR = ".snapshots"
POLL_S = 3.0


def is_due(iteration: int, interval: int, every: int) -> bool:
    """Every ``every``-th checkpoint: iterations that are multiples of ``interval * every``."""
    return every > 0 and iteration % (interval * every) == 0


def result_path(out_dir: str | os.PathLike, iteration: int) -> Path:
    return Path(out_dir) / f"iter_{iteration:07d}.json"


class CheckpointEvaluations:
    """Starts the evaluation of each due checkpoint as its own process; ``finish`` waits for them."""

    def __init__(self, *, config_path: str, config: dict, out_dir: str | os.PathLike, tokenizer: str, data_root: str,
                 starter=None):
        settings = config["evaluation"]["during_training"]
        self.every = int(settings["every_n_checkpoints"])
        self.max_sentences = int(settings["max_sentences"])
        self.languages = list(config["evaluation"]["bpb_languages"])
        self.config_path, self.tokenizer, self.data_root = str(config_path), str(tokenizer), str(data_root)
        self.out_dir = Path(out_dir)
        # starter(argv of `euroflow`, log path) -> a handle with poll(), wait(), terminate(), failure(), where, log_path
        self.starter = starter or LocalProcess
        self.running: dict = {}
        self.failed: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def poll(self) -> list[int]:
        """Start an evaluation of every snapshot not evaluated or started yet; what was started."""
        started = []
        snapshots = self.out_dir / SNAPSHOTS_DIR
        if not snapshots.is_dir():
            return started
        for snapshot in sorted(snapshots.glob("iter_*")):
            iteration = int(snapshot.name.split("_")[1])
            if iteration in self.running or iteration in self.failed:
                continue
            if result_path(self.out_dir, iteration).exists():
                shutil.rmtree(snapshot, ignore_errors=True)
                continue
            self.running[iteration] = self._start(iteration, snapshot)
            started.append(iteration)
        return started

    def _start(self, iteration: int, snapshot: Path):
        argv = ["evaluate", "checkpoint", "--config", self.config_path, "--checkpoint", str(snapshot), "--tokenizer", self.tokenizer,
                "--data-root", self.data_root, "--languages", ",".join(self.languages), "--max-sentences", str(self.max_sentences),
                "--remove-checkpoint", "--out", str(result_path(self.out_dir, iteration))]
        handle = self.starter(argv, result_path(self.out_dir, iteration).with_suffix(".log"))
        print(f"euroflow: evaluating checkpoint {iteration} {handle.where} (log: {handle.log_path})", file=sys.stderr, flush=True)
        return handle

    def _reap(self) -> None:
        for iteration, handle in list(self.running.items()):
            code = handle.poll()
            if code is None:
                continue
            del self.running[iteration]
            if code != 0:
                self.failed[iteration] = f"{handle.failure()} (log: {handle.log_path})"
                print(f"euroflow: evaluation of checkpoint {iteration} failed: {self.failed[iteration]}", file=sys.stderr, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            self._reap()
            self.poll()

    def __enter__(self) -> "CheckpointEvaluations":
        if self.enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._watch, name="euroflow-checkpoint-evaluations", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if exc_type is None and self.enabled:
            self.finish()
        else:  # training failed: its evaluations are not waited for, and end with it
            for handle in self.running.values():
                handle.terminate()

    def finish(self) -> dict[int, str]:
        """One last look (the final checkpoint), then wait for every evaluation; the failed ones."""
        self._reap()
        self.poll()
        for handle in self.running.values():
            handle.wait()
        self._reap()
        shutil.rmtree(self.out_dir / SNAPSHOTS_DIR, ignore_errors=True)
        return dict(self.failed)


class LocalProcess:
    """An evaluation as a process of this machine: low priority, one torch thread (training has the cores)."""

    where = "in its own process"

    def __init__(self, argv: list[str], log_path: Path):
        self.log_path = log_path
        command = [sys.executable, "-m", "euroflow.cli", *argv, "--threads", "1", "--device", "auto" if _cuda() else "cpu"]
        if shutil.which("nice"):
            command = ["nice", "-n", "10", *command]
        with open(log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self) -> None:
        self.process.wait()

    def terminate(self) -> None:
        self.process.terminate()

    def failure(self) -> str:
        return f"exit status {self.process.returncode}: {last_line(self.log_path)}"


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return (lines or [""])[-1][:300]


def snapshot_for_evaluation(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A hard-link copy of a just-saved checkpoint for its evaluation, renamed into place when complete:
    the trainer's rotation (training.keep_checkpoints) may then remove the checkpoint at any time."""
    source = Path(checkpoint_dir)
    final = Path(out_dir) / SNAPSHOTS_DIR / source.name
    if final.exists() or result_path(out_dir, int(source.name.split("_")[1])).exists():
        return final
    with atomic_path(final, directory=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(source, tmp, copy_function=_link_or_copy)
    return final


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def evaluate_checkpoint(config: dict, checkpoint_dir, tokenizer_dir, data_root, languages: list[str], *,
                        max_sentences: int, out, batch_size: int = 16, device: str = "auto") -> dict:
    """Export ``checkpoint_dir`` to a scratch Hugging Face directory and write its bpb per language to ``out``."""
    from euroflow.evaluate.bpb import bits_per_byte, flores_sentences
    from euroflow.evaluate.model import load_model, load_tokenizer
    from euroflow.train.export_hf import export_hf

    if max_sentences < 1:
        raise EuroflowError(f"--max-sentences={max_sentences}: must be >= 1")
    with tempfile.TemporaryDirectory(prefix="euroflow-checkpoint-eval-") as scratch:
        check = export_hf(config, checkpoint_dir, tokenizer_dir, Path(scratch) / "hf")
        model = load_model(Path(scratch) / "hf", device)
        tokenizer = load_tokenizer(Path(scratch) / "hf")
        per_language = {}
        for lang in languages:
            result = bits_per_byte(model, tokenizer, flores_sentences(data_root, lang)[:max_sentences], batch_size=batch_size)
            per_language[lang] = {key: result[key] for key in ("bpb", "sentences", "bytes")}
    document = {
        "step": check["iteration"],
        "checkpoint": Path(checkpoint_dir).name,
        "tokens": check["iteration"] * config["training"]["global_batch_size"] * config["model"]["seq_length"],
        "metric": "bits_per_byte, FLORES-200 test, [bos] + ids + [eos] per sentence",
        "max_sentences": max_sentences,
        "export_max_abs_diff": check["max_abs_diff"],
        "languages": per_language,
        "macro_mean_bpb": math.fsum(r["bpb"] for r in per_language.values()) / len(per_language),
    }
    write_text(out, json.dumps(document, indent=2) + "\n")
    return document


def read_curve(evaluations_dir: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """The evaluations in step order, and one line for each checkpoint whose evaluation failed (its log, no result)."""
    directory = Path(evaluations_dir)
    points = [read_json(path, "checkpoint evaluation") for path in sorted(directory.glob("iter_*.json"))] if directory.is_dir() else []
    done = {p.get("checkpoint") for p in points}
    failed = [f"{log.with_suffix('').name}: no result, see {log}" for log in sorted(directory.glob("iter_*.log"))
              if log.with_suffix("").name not in done] if directory.is_dir() else []
    return sorted(points, key=lambda p: p["step"]), failed


def learning_curve(evaluations_dir, out_json, out_md, out_png, *, run_name: str = "") -> dict[str, Any]:
    """Table and plot of bpb per language against the training step; refuses when there is no point."""
    points, failed = read_curve(evaluations_dir)
    if not points:
        raise EuroflowError(f"{evaluations_dir}: no checkpoint evaluations (evaluation.during_training.every_n_checkpoints "
                            "and training.checkpoint_interval decide which checkpoints are evaluated)")
    languages = list(points[-1]["languages"])
    summary = {
        "run": run_name,
        "metric": points[-1]["metric"],
        "max_sentences": points[-1]["max_sentences"],
        "steps": [p["step"] for p in points],
        "tokens": [p["tokens"] for p in points],
        "languages": {lang: [p["languages"].get(lang, {}).get("bpb") for p in points] for lang in languages},
        "macro_mean_bpb": [p["macro_mean_bpb"] for p in points],
        "failed": failed,
    }
    write_text(out_json, json.dumps(summary, indent=2) + "\n")
    write_text(out_md, curve_markdown(summary))
    _plot(summary, out_png)
    return summary


def curve_markdown(summary: dict) -> str:
    steps = summary["steps"]
    lines = [
        "## Learning curve: bits per byte per language during training (lower is better)",
        "",
        f"FLORES-200 test, the first {summary['max_sentences']} sentences per language, at each evaluated checkpoint.",
        "",
        "| language | " + " | ".join(f"step {s}" for s in steps) + " | change |",
        "|---|" + "---:|" * (len(steps) + 1),
    ]

    def cell(value):
        return "" if value is None else f"{value:.4f}"

    for lang, values in [*summary["languages"].items(), ("**macro mean**", summary["macro_mean_bpb"])]:
        change = f"{values[-1] - values[0]:+.4f}" if values[0] is not None and values[-1] is not None else ""
        lines.append(f"| {lang} | " + " | ".join(cell(v) for v in values) + f" | {change} |")
    if summary["failed"]:
        lines += ["", "Not evaluated: " + "; ".join(summary["failed"])]
    return "\n".join(lines) + "\n"


def _plot(summary: dict, out_png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 6))
    colors = plt.get_cmap("tab20")
    for index, (lang, values) in enumerate(summary["languages"].items()):
        ax.plot(summary["steps"], values, marker="o", markersize=3, linewidth=1, color=colors(index % 20), label=lang)
    ax.plot(summary["steps"], summary["macro_mean_bpb"], color="black", linewidth=3, label="macro mean")
    ax.set_xlabel("training step")
    ax.set_ylabel("bits per byte (FLORES test)")
    ax.set_title(f"{summary['run']}: learning curve per language".strip(": "))
    ax.legend(ncol=2, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
