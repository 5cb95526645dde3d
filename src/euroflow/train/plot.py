"""The training loss curve as a PNG, from ``train_log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from euroflow.atomic import atomic_path


def read_log(log_path: str | Path) -> list[dict]:
    """The complete JSON lines of a training log (a line cut off by a kill is skipped)."""
    entries = []
    path = Path(log_path)
    if not path.exists():
        return entries
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def plot_loss_curve(log_path: str | Path, png_path: str | Path, *, title: str = "training loss") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = read_log(log_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([e["step"] for e in entries], [e["loss"] for e in entries], lw=1.2, label="train")
    valid = [e for e in entries if "valid_loss" in e]
    if valid:
        ax.plot([e["step"] for e in valid], [e["valid_loss"] for e in valid], "o-", ms=4, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png_path
