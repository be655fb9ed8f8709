"""``rationalize train sft|mario|dpo``: a thin layer over :mod:`rationalizer.training`."""

from __future__ import annotations

import click

from rationalizer.training.config import DPOConfig, MarioConfig, SFTConfig

from .config_options import options_from
from .reporting import new_progress


def _run(trainer, config, resume: bool) -> None:
    """Run a trainer with a progress bar (loss and trained tokens/s) on stderr."""
    progress = new_progress()
    try:
        out = trainer(config, resume=resume, progress=progress)
    finally:
        progress.close()
    click.echo(f"bundle written to {out}")


@click.group("train")
def train_group() -> None:
    """Train a student: supervised distillation (sft), multi-reward training (mario) or preference optimization (dpo)."""


@train_group.command("sft")
@options_from(SFTConfig)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
def sft_command(config: SFTConfig, resume: bool) -> None:
    """Supervised distillation with LoRA (I-RO targets; multi-task and counterfactual objectives)."""
    from rationalizer.training.sft import train_sft

    _run(train_sft, config, resume)


@train_group.command("mario")
@options_from(MarioConfig, exclude=("code_words",), names={"rewards": "--reward"})
@click.option("--resume", is_flag=True, help="Continue after the last finished round / checkpoint.")
def mario_command(config: MarioConfig, resume: bool) -> None:
    """Multi-reward training (MaRio/Quark) with selectable quality codes, over an SFT bundle."""
    from rationalizer.training.mario import train_mario

    _run(train_mario, config, resume)


@train_group.command("dpo")
@options_from(DPOConfig, exclude=("reward_weights",), names={"rewards": "--reward"})
@click.option("--resume", is_flag=True, help="Continue after the last finished round / checkpoint.")
def dpo_command(config: DPOConfig, resume: bool) -> None:
    """DPO on reward-ranked rationale pairs over an SFT or MaRio bundle, in self-improving rounds."""
    from rationalizer.training.dpo import train_dpo

    _run(train_dpo, config, resume)
