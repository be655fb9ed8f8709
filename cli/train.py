"""``rationalize train sft|mario``: a thin layer over :mod:`rationalizer.training`."""

from __future__ import annotations

import sys

import click

from rationalizer.training.config import MarioConfig, SFTConfig

from .config_options import options_from


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
@options_from(SFTConfig)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
def sft_command(config: SFTConfig, resume: bool) -> None:
    """Supervised distillation with LoRA (I-RO targets; multi-task and counterfactual objectives)."""
    from rationalizer.training.sft import train_sft

    _run(train_sft, config, resume, "sft")


@train_group.command("mario")
@options_from(MarioConfig, names={"rewards": "--reward"})
@click.option("--resume", is_flag=True, help="Continue after the last finished round / checkpoint.")
def mario_command(config: MarioConfig, resume: bool) -> None:
    """Multi-reward training (MaRio/Quark) with selectable quality codes, over an SFT bundle."""
    from rationalizer.training.mario import train_mario

    _run(train_mario, config, resume, "mario")
