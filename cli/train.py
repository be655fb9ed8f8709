"""``rationalize train sft|mario``: a thin layer over :mod:`rationalizer.training`."""

from __future__ import annotations

import sys

import click


def _run(trainer, config, resume: bool, label: str) -> None:
    """Run a trainer with a progress bar (loss and trained tokens/s) on stderr."""
    bars: list = []  # the bar starts with the first step, so an error before training is the only line printed

    def progress(row: dict) -> None:
        if not bars:
            bars.append(click.progressbar(length=1, label=label, file=sys.stderr, show_eta=True, show_pos=True,
                                          item_show_func=lambda s: s).__enter__())
        bar = bars[0]
        bar.length, bar.pos = row["total"], row["step"] - 1  # each MaRio round counts its own steps
        bar.update(1, f"loss {row['loss']:.3f}, {row['tokens_per_s']:.0f} tok/s")

    try:
        out = trainer(config, resume=resume, progress=progress, say=lambda m: click.echo(m, err=True))
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    click.echo(f"bundle written to {out}")


@click.group("train")
def train_group() -> None:
    """Train a student: supervised distillation (sft) or multi-reward training (mario)."""


@train_group.command("sft")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="JSON file; keys mirror SFTConfig.")
@click.option("--train", multiple=True, help="Training file (repeat for several).")
@click.option("--dev", help="Dev file for evaluation during training.")
@click.option("--out", help="Output bundle folder.")
@click.option("--base", help="HF model folder, or a hub id already in the local HF cache "
              "('default': the embedded SmolLM2-135M-Instruct).")
@click.option("--objective", type=click.Choice(["iro", "multitask"]))
@click.option("--train-limit", type=click.IntRange(1))
@click.option("--max-steps", type=click.IntRange(1))
@click.option("--epochs", type=click.FloatRange(0, min_open=True))
@click.option("--batch-size", type=click.IntRange(1))
@click.option("--grad-accum", type=click.IntRange(1))
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True))
@click.option("--eval-every", type=click.IntRange(1))
@click.option("--eval-samples", type=click.IntRange(1))
@click.option("--checkpoint-every", type=click.IntRange(1))
@click.option("--early-stopping-patience", type=click.IntRange(1))
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]),
              help="auto (default): bf16 where the hardware computes it natively, else fp32.")
@click.option("--packing/--no-packing", default=None,
              help="Padding-free packed batches with logits at target positions only (default) or padded ones.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--seed", type=int)
@click.option("--merge/--no-merge", default=None, help="Also write merged full weights.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
def sft_command(config_path: str | None, train: tuple[str, ...], resume: bool, **flags) -> None:
    """Supervised distillation with LoRA (I-RO targets; multi-task and counterfactual objectives)."""
    from rationalizer.training.config import SFTConfig, load_config
    from rationalizer.training.sft import train_sft

    config = load_config(SFTConfig, config_path, {**flags, "train": list(train) or None})
    _run(train_sft, config, resume, "sft")


@train_group.command("mario")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="JSON file; keys mirror MarioConfig.")
@click.option("--sft", help="The SFT bundle to start from (policy and frozen reference).")
@click.option("--train", multiple=True, help="Training file (repeat for several).")
@click.option("--out", help="Output bundle folder.")
@click.option("--reward", "rewards", multiple=True,
              help="accuracy, diversity, consistency, plausibility, length or module:function (repeat).")
@click.option("--judge", help="Model for consistency and plausibility: default or a bundle.")
@click.option("--bins", type=click.IntRange(2, 20))
@click.option("--correctness-code/--no-correctness-code", default=None, help="Add a right/wrong answer code.")
@click.option("--rounds", type=click.IntRange(1))
@click.option("--samples-per-question", type=click.IntRange(1))
@click.option("--questions-per-round", type=click.IntRange(1))
@click.option("--steps-per-round", type=click.IntRange(1))
@click.option("--train-limit", type=click.IntRange(1))
@click.option("--batch-size", type=click.IntRange(1))
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True))
@click.option("--beta", type=click.FloatRange(0))
@click.option("--reference-top-k", type=click.IntRange(0),
              help="Top-k of the frozen reference cached once per round for the KL (0: a reference pass every step).")
@click.option("--gamma", type=click.FloatRange(0))
@click.option("--max-new-tokens", type=click.IntRange(1, 1024))
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]),
              help="auto (default): bf16 where the hardware computes it natively, else fp32.")
@click.option("--packing/--no-packing", default=None,
              help="Padding-free packed batches with logits at target positions only (default) or padded ones.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--seed", type=int)
@click.option("--resume", is_flag=True, help="Continue after the last finished round / checkpoint.")
def mario_command(config_path: str | None, train: tuple[str, ...], rewards: tuple[str, ...], resume: bool,
                  **flags) -> None:
    """Multi-reward training (MaRio/Quark) with selectable quality codes, over an SFT bundle."""
    from rationalizer.training.config import MarioConfig, load_config
    from rationalizer.training.mario import train_mario

    config = load_config(MarioConfig, config_path,
                         {**flags, "train": list(train) or None, "rewards": list(rewards) or None})
    _run(train_mario, config, resume, "mario")
