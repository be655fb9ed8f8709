"""Trainer settings as dataclasses: the same objects configure code, the CLI and saved files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rationalizer.dataclass_json import DataclassValueError, from_dict, to_dict
from rationalizer.errors import UserError


@dataclass
class LoraSettings:
    """peft LoRA settings (all linear layers of a Llama block by default)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])


@dataclass
class SFTConfig:
    """Supervised distillation: I-RO targets, optional multi-task and counterfactual objectives."""

    train: list[str]
    """Training files (JSONL/CSV in the project's schema); counterfactual rows are recognized by ``kind``."""
    out: str
    """Output bundle folder (checkpoints, metrics and the final adapter go here)."""
    base: str = "default"
    """HF causal LM folder or hub id; 'default' is the embedded SmolLM2-135M-Instruct, rebuilt from its GGUF."""
    dev: str | None = None
    """Dev file for evaluation every ``eval_every`` steps."""
    train_limit: int | None = None
    """Use the first N usable rows of each training file."""
    train_limits: list[int] | None = None
    """Per-file limits, in the order of ``train`` (0: no limit); overrides ``train_limit`` where given."""
    max_per_question: int | None = None
    """Keep at most this many rows per question and file (files with several teacher rationales per
    question then cover more questions within a limit)."""
    drop_teacher_incorrect: bool = True
    """Skip rows marked ``teacher_correct: false`` (rationales that argue for a wrong answer)."""
    objective: str = "iro"
    """'iro' (rationale then answer) or 'multitask' (distilling step-by-step: answer task + rationale task)."""
    multitask_alpha: float = 0.5
    """Weight of the answer task in the multi-task loss; 1 - alpha goes to the rationale task."""
    counterfactual_alpha: float = 0.5
    """SCOTT: loss = (1 - alpha)·factual + alpha·counterfactual (answer tokens only)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    schedule: str = "cosine"
    """'cosine', 'linear' or 'constant' (after warmup)."""
    weight_decay: float = 0.0
    max_length: int = 384
    group_by_length: bool = True
    """Batches of similar length (less padding); order is still shuffled by seed."""
    eval_every: int = 50
    eval_samples: int = 64
    """Dev questions answered greedily at each evaluation (accuracy through the eval code)."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without a better dev accuracy."""
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    precision: str = "fp32"
    """'fp32' or 'bf16' (autocast)."""
    device: str = "auto"
    merge: bool = False
    """Also write merged full weights (HF safetensors) into the bundle."""
    max_new_tokens: int = 96


def load_config(cls: type, path: str | None, overrides: dict[str, Any]) -> Any:
    """Build ``cls`` from a JSON file (keys mirror the dataclass) with flag overrides on top."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    known = {f.name for f in fields(cls)}
    data.update({k: v for k, v in overrides.items() if v is not None and k in known})
    try:
        return from_dict(cls, data, where=Path(path).name if path else cls.__name__)
    except DataclassValueError as exc:
        raise UserError(str(exc)) from None


def save_config(config: Any, path: Path) -> None:
    """Write a config as JSON (the format ``load_config`` reads)."""
    from rationalizer.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2) + "\n")


@dataclass
class MarioConfig(SFTConfig):
    """Multi-reward training (MaRio/Quark) on top of an SFT bundle. ``base`` is ignored: the policy
    starts from ``sft`` and the frozen reference is that same SFT model."""

    sft: str = ""
    """The SFT bundle folder to start from."""
    rewards: list[str] = field(default_factory=lambda: ["accuracy", "diversity", "consistency", "plausibility"])
    """Reward names, or 'module:function' import paths of user rewards."""
    judge: str = "default"
    """Simulator/verifier model for consistency and plausibility: 'default' or a bundle folder."""
    bins: int = 5
    """Quantile bins per reward; each bin is a control code level."""
    correctness_code: bool = False
    """Add a two-level code ``<correct:2>`` / ``<correct:1>`` for a right / wrong answer (Quark's option)."""
    rounds: int = 2
    samples_per_question: int = 2
    questions_per_round: int | None = None
    """Questions sampled from the policy each round (default: all training questions)."""
    sample_temperature: float = 1.0
    sample_top_p: float = 0.9
    steps_per_round: int = 50
    beta: float = 0.05
    """Weight of KL(policy || reference)."""
    gamma: float = 0.0
    """Weight of the entropy bonus."""
    length_target: int | None = None
    """Target rationale length in words for the 'length' reward."""
