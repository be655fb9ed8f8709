"""The training plot: loss per step and, for MaRio, each reward's mean per round."""

from __future__ import annotations

import json
from pathlib import Path


def plot_metrics(log: Path, out: Path) -> Path | None:
    """Read the metrics JSONL and draw loss (train and dev) and dev accuracy; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    dev = [r for r in rows if r.get("kind") == "eval"]
    rounds = [r for r in rows if r.get("kind") == "round"]
    panels = 2 + bool(rounds)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    axes[0].plot(*zip(*train), label="train loss") if train else None
    if dev:
        axes[0].plot([r["step"] for r in dev], [r["dev_loss"] for r in dev], "o-", label="dev loss")
        axes[1].plot([r["step"] for r in dev], [r["dev_accuracy"] for r in dev], "o-", color="C2")
    axes[0].set_xlabel("step"), axes[0].set_title("loss"), axes[0].legend()
    axes[1].set_xlabel("step"), axes[1].set_title("dev accuracy (greedy)")
    if rounds:
        for name in rounds[0]["rewards"]:
            axes[2].plot([r["round"] for r in rounds], [r["rewards"][name] for r in rounds], "o-", label=name)
        axes[2].set_xlabel("round"), axes[2].set_title("reward means"), axes[2].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
