"""Trainer settings as dataclasses: the same objects configure code, the CLI and saved files."""

from __future__ import annotations

import json
import math
import reprlib
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
    """HF causal LM folder, or a hub id already in the local HF cache (nothing is downloaded); 'default' is
    the embedded SmolLM2-135M-Instruct, rebuilt from its GGUF."""
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
    precision: str = "auto"
    """'auto' (bf16 where the hardware computes it natively: AVX-512 BF16/AMX CPUs, bf16 CUDA; else fp32),
    'fp32' or 'bf16' (autocast; the LoRA weights and the optimizer state stay fp32)."""
    packing: bool = True
    """Padding-free packing: a batch's sequences back to back in one row, attention kept within each,
    logits only at target positions. False: padded batches (length-grouped with ``group_by_length``)."""
    device: str = "auto"
    merge: bool = False
    """Also write merged full weights (HF safetensors) into the bundle."""
    max_new_tokens: int = 96


def load_config(cls: type, path: str | None, overrides: dict[str, Any]) -> Any:
    """Build ``cls`` from a JSON file (keys mirror the dataclass) with flag overrides on top."""
    data: Any = {}
    if path:
        try:
            data = json.loads(Path(path).read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
        except ValueError:  # json.loads' only other error: an integer past the int-from-text limit
            raise UserError(f"{path}: not valid JSON (a number of more than 4,300 digits)") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    data.update({k: v for k, v in overrides.items() if v is not None and k in known})
    where = Path(path).name if path else cls.__name__
    try:
        config = from_dict(cls, data, where=where)
    except DataclassValueError as exc:
        raise UserError(str(exc)) from None
    check_config(config, where)
    return config


# Allowed values of the numeric settings: (lowest, highest, lowest excluded). A setting absent here
# is checked for type only; None stays allowed where the field is optional.
_RANGES: dict[str, tuple[float, float, bool]] = {
    "train_limit": (1, 10**9, False), "max_per_question": (1, 10**9, False),
    "multitask_alpha": (0, 1, False), "counterfactual_alpha": (0, 1, False),
    "learning_rate": (0, 1, True), "epochs": (0, 10_000, True), "max_steps": (1, 10**9, False),
    "batch_size": (1, 65_536, False), "grad_accum": (1, 65_536, False), "warmup_ratio": (0, 0.999, False),
    "weight_decay": (0, 1, False), "max_length": (8, 1_048_576, False), "eval_every": (1, 10**9, False),
    "eval_samples": (1, 10**7, False), "early_stopping_patience": (1, 10**6, False),
    "checkpoint_every": (1, 10**9, False), "keep_checkpoints": (1, 1000, False), "seed": (0, 2**32 - 1, False),
    "max_new_tokens": (1, 4096, False),
    "bins": (2, 20, False), "rounds": (1, 10_000, False), "samples_per_question": (1, 1024, False),
    "questions_per_round": (1, 10**9, False), "sample_temperature": (0, 5, True), "sample_top_p": (0, 1, True),
    "steps_per_round": (1, 10**9, False), "beta": (0, 1000, False), "gamma": (0, 1000, False),
    "length_target": (1, 100_000, False), "reference_top_k": (0, 10_000_000, False),
}
_LORA_RANGES: dict[str, tuple[float, float, bool]] = {"r": (1, 4096, False), "alpha": (0, 1e6, True),
                                                      "dropout": (0, 0.999, False)}
_CHOICES = {"objective": ("iro", "multitask"), "schedule": ("cosine", "linear", "constant"),
            "precision": ("auto", "fp32", "bf16"), "device": ("auto", "cpu", "cuda")}


def check_config(config: SFTConfig, where: str | None = None) -> None:
    """Refuse settings that cannot train (``max_steps: -5``, a zero batch, a NaN learning rate, an
    empty file list) with one :class:`UserError` that names the setting and its allowed range."""
    where = where or type(config).__name__
    for name, (low, high, low_open) in _RANGES.items():
        _check_number(where, name, getattr(config, name, None), low, high, low_open)
    for name, (low, high, low_open) in _LORA_RANGES.items():
        _check_number(where, f"lora.{name}", getattr(config.lora, name), low, high, low_open)
    for name, allowed in _CHOICES.items():
        if getattr(config, name) not in allowed:
            raise UserError(f"{where}: {name} must be one of {', '.join(allowed)}, not {getattr(config, name)!r}")
    for limit in config.train_limits or []:
        _check_number(where, "train_limits[]", limit, 0, 10**9, False)
    if not config.train or not all(isinstance(t, str) and t.strip() for t in config.train):
        raise UserError(f"{where}: train must name at least one training file")
    for name in ("out", "base"):
        if not getattr(config, name).strip():
            raise UserError(f"{where}: {name} must not be empty")
    if not config.lora.target_modules:
        raise UserError(f"{where}: lora.target_modules must name at least one module")


def _check_number(where: str, name: str, value: Any, low: float, high: float, low_open: bool) -> None:
    if value is None:
        return
    finite = isinstance(value, int) or math.isfinite(value)  # isfinite() cannot take a 400-digit integer
    if not finite or value < low or (low_open and value == low) or value > high:
        lowest = f"above {_number(low)}" if low_open else f"at least {_number(low)}"
        raise UserError(f"{where}: {name} must be {lowest} and at most {_number(high)}, not {_number(value)}")


def _number(value: float) -> str:
    """A number as a message shows it: whole numbers without a fraction, huge ones shortened."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    try:
        return reprlib.repr(value)
    except ValueError:  # an integer past the int-to-text limit
        return "a number of more than 4,300 digits"


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
    reference_top_k: int = 64
    """With packing: the frozen reference's top-k next-token log-probabilities (and the remaining mass)
    computed once per round for the KL term; 0: the reference's forward pass at every step, exact KL."""
    length_target: int | None = None
    """Target rationale length in words for the 'length' reward."""
