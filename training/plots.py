"""The training plot: loss per step and, for MaRio, each reward's mean per round."""

from __future__ import annotations

import json
from pathlib import Path

from rationalizer.charts import pyplot, save_figure


def plot_metrics(log: Path, out: Path) -> Path | None:
    """Read the metrics JSONL and draw loss (train and dev) and dev accuracy; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
    dev = [r for r in rows if r.get("kind") == "eval"]
    rounds = [r for r in rows if r.get("kind") == "round"]
    panels = 1 + bool(dev) + bool(rounds)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    loss_ax, *others = axes[0]
    if train:
        loss_ax.plot(*zip(*train), label="train loss")
    if dev:
        loss_ax.plot([r["step"] for r in dev], [r["dev_loss"] for r in dev], "o-", label="dev loss")
        acc_ax = others.pop(0)
        acc_ax.plot([r["step"] for r in dev], [r["dev_accuracy"] for r in dev], "o-", color="C2")
        acc_ax.set_xlabel("step"), acc_ax.set_title("dev accuracy (greedy)")
    loss_ax.set_xlabel("step"), loss_ax.set_title("loss"), loss_ax.legend()
    if rounds:
        reward_ax = others.pop(0)
        for name in rounds[0]["rewards"]:
            reward_ax.plot([r["round"] for r in rounds], [r["rewards"][name] for r in rounds], "o-", label=name)
        reward_ax.set_xlabel("round"), reward_ax.set_title("policy reward means"), reward_ax.legend()
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
