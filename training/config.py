"""Trainer settings as dataclasses: the same objects configure code, the CLI and saved files.

Each setting is a ``field`` whose metadata holds its help text (the CLI's option help) and the
values it allows (:mod:`rationalizer.config_checks`); ``__post_init__`` checks them, so a config
built by code is refused as one read from a file is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from rationalizer.backends import Device
from rationalizer.config_checks import Range, check_settings
from rationalizer.errors import ConfigError
from rationalizer.prompting import CodePlacement

from .precision import Precision

Objective = Literal["iro", "multitask"]
Schedule = Literal["cosine", "linear", "constant"]
PromptStyle = Literal["student", "teacher"]

_COUNT = Range(1, 10**9)  # a count of rows, steps or questions


@dataclass
class LoraSettings:
    """peft LoRA settings (all linear layers of a Llama block by default)."""

    r: int = field(default=16, metadata={"help": "LoRA rank.", "range": Range(1, 4096)})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r).",
                                             "range": Range(0, 1e6, low_open=True)})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input.", "range": Range(0, 0.999)})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Module names that get an adapter.", "nonempty": "must name at least one module"})

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class TrainerConfig:
    """What every trainer reads: data, LoRA, optimizer, batching, checkpoints, precision and device."""

    train: list[str] = field(metadata={
        "help": "Training files (JSONL/CSV in the project's schema); counterfactual rows are recognized by `kind`.",
        "nonempty": "must name at least one training file"})
    out: str = field(metadata={"help": "Output bundle folder (checkpoints, metrics and the final adapter go here).",
                               "nonempty": True})
    train_limit: int | None = field(default=None, metadata={
        "help": "Use the first N usable rows of each training file.", "range": _COUNT})
    train_limits: list[int] | None = field(default=None, metadata={
        "help": "Per-file limits, in the order of `train` (0: no limit); overrides `train_limit` where given.",
        "range": Range(0, 10**9)})
    max_per_question: int | None = field(default=None, metadata={
        "help": "Keep at most this many rows per question and file (files with several teacher rationales per "
                "question then cover more questions within a limit).", "range": _COUNT})
    drop_teacher_incorrect: bool = field(default=True, metadata={
        "help": "Skip rows marked `teacher_correct: false` (rationales that argue for a wrong answer)."})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA settings."})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate.",
                                                         "range": Range(0, 1, low_open=True)})
    batch_size: int = field(default=8, metadata={"help": "Sequences per batch (and per process).",
                                                 "range": Range(1, 65_536)})
    grad_accum: int = field(default=1, metadata={"help": "Batches per optimizer step.", "range": Range(1, 65_536)})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of the steps spent warming the learning rate up.",
                                                        "range": Range(0, 0.999)})
    schedule: Schedule = field(default="cosine", metadata={"help": "Learning-rate decay after warmup."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay.", "range": Range(0, 1)})
    max_length: int = field(default=384, metadata={"help": "Longest training sequence in tokens (longer ones are dropped).",
                                                   "range": Range(8, 1_048_576)})
    group_by_length: bool = field(default=True, metadata={
        "help": "Batches of similar length (less padding); order is still shuffled by seed."})
    checkpoint_every: int = field(default=50, metadata={"help": "Steps between checkpoints.", "range": _COUNT})
    keep_checkpoints: int = field(default=2, metadata={"help": "Newest checkpoints kept.", "range": Range(1, 1000)})
    seed: int = field(default=0, metadata={"help": "Seed of shuffling, dropout and sampling.",
                                           "range": Range(0, 2**32 - 1)})
    precision: Precision = field(default="auto", metadata={
        "help": "auto: bf16 where the hardware computes it natively (AVX-512 BF16/AMX CPUs, bf16 CUDA), else fp32; "
                "bf16 is autocast (the LoRA weights and the optimizer state stay fp32)."})
    packing: bool = field(default=True, metadata={
        "help": "Padding-free packing: a batch's sequences back to back in one row, attention kept within each, "
                "logits only at target positions; off: padded batches (length-grouped with `group_by_length`)."})
    device: Device = field(default="auto", metadata={"help": "Where to train: auto takes a usable GPU."})
    max_new_tokens: int = field(default=96, metadata={
        "help": "Generation budget per answer (dev accuracy, MaRio's samples, the bundle's default).",
        "range": Range(1, 4096)})

    def __post_init__(self) -> None:
        check_settings(self)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of one training run, given the steps an epoch of the data makes."""
        raise NotImplementedError


@dataclass
class SFTConfig(TrainerConfig):
    """Supervised distillation: I-RO targets, optional multi-task and counterfactual objectives."""

    base: str = field(default="default", metadata={
        "help": "HF causal LM folder, or a hub id already in the local HF cache (nothing is downloaded); "
                "'default' is the embedded SmolLM2-135M-Instruct, rebuilt from its GGUF.", "nonempty": True})
    dev: str | None = field(default=None, metadata={"help": "Dev file for evaluation every `eval_every` steps."})
    objective: Objective = field(default="iro", metadata={
        "help": "iro: rationale then answer; multitask: distilling step-by-step (answer task + rationale task)."})
    multitask_alpha: float = field(default=0.5, metadata={
        "help": "Weight of the answer task in the multi-task loss; 1 - alpha goes to the rationale task.",
        "range": Range(0, 1)})
    counterfactual_alpha: float = field(default=0.5, metadata={
        "help": "SCOTT: loss = (1 - alpha)·factual + alpha·counterfactual (answer tokens only).", "range": Range(0, 1)})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training data (unless `max_steps`).",
                                                 "range": Range(0, 10_000, low_open=True)})
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides `epochs`.",
                                                          "range": _COUNT})
    eval_every: int = field(default=50, metadata={"help": "Steps between dev evaluations.", "range": _COUNT})
    eval_samples: int = field(default=64, metadata={
        "help": "Dev questions answered greedily at each evaluation (accuracy through the eval code).",
        "range": Range(1, 10**7)})
    early_stopping_patience: int | None = field(default=None, metadata={
        "help": "Stop after this many evaluations without a better dev accuracy.", "range": Range(1, 10**6)})
    merge: bool = field(default=False, metadata={"help": "Also write merged full weights (HF safetensors) into the bundle."})

    def total_steps(self, steps_per_epoch: int) -> int:
        """``max_steps``, else ``epochs`` of ``steps_per_epoch`` (at least one)."""
        return self.max_steps or max(1, math.ceil(self.epochs * steps_per_epoch))


@dataclass
class PoolConfig(TrainerConfig):
    """What MaRio and DPO share: a start bundle, MaRio's pool (the teacher's rationales of the training
    questions plus the policy's samples each round) and the rewards that score it."""

    sft: str = field(default="", metadata={"help": "The SFT bundle folder to start from (policy and frozen reference)."})
    rewards: list[str] = field(
        default_factory=lambda: ["accuracy", "diversity", "consistency", "plausibility"],
        metadata={"help": "accuracy, diversity, consistency, plausibility, length, or 'module:function' import "
                          "paths of user rewards.", "nonempty": True})
    judge: str = field(default="default", metadata={
        "help": "Simulator/verifier model for consistency and plausibility: 'default' or a bundle folder.",
        "nonempty": True})
    drop_teacher_incorrect: bool = field(default=False, metadata={
        "help": "Leave teacher rationales marked `teacher_correct: false` out of the pool (by default they stay, "
                "with the teacher's answer: natural low-accuracy, low-consistency examples)."})
    question_limits: list[int] | None = field(default=None, metadata={
        "help": "Per training file, its first N questions with all their rationales (0: all); overrides the "
                "row limits `train_limit` and `train_limits`.", "range": Range(0, 10**9)})
    rounds: int = field(default=2, metadata={
        "help": "Sample-score-train rounds; each round after the first samples from the new policy.",
        "range": Range(1, 10_000)})
    samples_per_question: int = field(default=4, metadata={
        "help": "Rationales sampled per question each round (0: the teacher's rationales only).",
        "range": Range(0, 1024)})
    questions_per_round: int | None = field(default=None, metadata={
        "help": "Questions sampled from the policy each round (default: every training question).", "range": _COUNT})
    sample_temperature: float = field(default=1.0, metadata={"help": "Temperature of the policy's samples.",
                                                             "range": Range(0, 5, low_open=True)})
    sample_top_p: float = field(default=0.9, metadata={"help": "Top-p of the policy's samples.",
                                                       "range": Range(0, 1, low_open=True)})
    steps_per_round: int = field(default=50, metadata={"help": "Optimizer steps per round.", "range": _COUNT})
    length_target: int | None = field(default=None, metadata={
        "help": "Target rationale length in words for the 'length' reward.", "range": Range(1, 100_000)})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.question_limits is not None and len(self.question_limits) != len(self.train):
            raise ConfigError(type(self).__name__, "question_limits",
                              f"has {len(self.question_limits)} entries for {len(self.train)} training files")
        if not self.sft.strip():
            raise ConfigError(type(self).__name__, "sft",
                              "must name the SFT bundle (or, for DPO, an HF model folder) to start from (--sft)")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Each round trains ``steps_per_round`` steps, however many the pool makes per epoch."""
        return self.steps_per_round


@dataclass
class MarioConfig(PoolConfig):
    """Multi-reward training (MaRio/Quark) on top of an SFT bundle: the policy starts from ``sft`` and the
    frozen reference is that same SFT model."""

    bins: int = field(default=5, metadata={
        "help": "Equal-count bins per reward, cut within each data source; each bin is a control-code level "
                "(accuracy is always two levels: wrong, right).", "range": Range(2, 20)})
    code_placement: CodePlacement = field(default="response", metadata={
        "help": "Where the codes go: response (the start of the answer, right before the rationale, as MaRio "
                "places them) or user (before the question)."})
    code_words: dict[str, list[str]] | None = field(default=None, metadata={
        "help": "Per reward, the text of each level (level 1 first) written in place of `<name:level>`: words "
                "the student already reads, such as 'Explain in one short sentence.' for the top length level "
                "(config file only)."})
    beta: float = field(default=0.05, metadata={"help": "Weight of KL(policy || reference).", "range": Range(0, 1000)})
    gamma: float = field(default=0.0, metadata={"help": "Weight of the entropy bonus.", "range": Range(0, 1000)})
    reference_top_k: int = field(default=64, metadata={
        "help": "With packing: the frozen reference's top-k next-token log-probabilities (and the remaining mass) "
                "computed once per round for the KL term; 0: the reference's forward pass at every step, exact KL.",
        "range": Range(0, 10_000_000)})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, words in (self.code_words or {}).items():
            from .binning import BINARY_REWARDS

            levels = 2 if name in BINARY_REWARDS else self.bins
            if name not in self.rewards:
                raise ConfigError(type(self).__name__, "code_words", f"names {name!r}, which is not among the rewards")
            if len(words) != levels or not all(w.strip() for w in words):
                raise ConfigError(type(self).__name__, "code_words",
                                  f"{name!r} needs {levels} non-empty texts, one per level, not {len(words)}")


@dataclass
class DPOConfig(PoolConfig):
    """Direct preference optimization over an SFT (or MaRio) bundle: pairs of a better and a worse rationale
    per question, ranked by MaRio's rewards over its pool (or read from pair files); the frozen reference is
    the start bundle's policy. Rounds resample the pool from the new policy (the self-improvement loop).
    Started from a local teacher's HF folder with ``teach --prefer-student`` pairs and ``prompt_style:
    teacher``, it is ARTE's teacher alignment; the aligned teacher is OUT/merged.
    ``batch_size`` counts pairs (each is two sequences, as TRL's DPO batch size counts them)."""

    sft: str = field(default="", metadata={
        "help": "Where to start: a bundle (SFT or MaRio; the policy continues its adapter, the reference is its "
                "policy frozen), or an HF causal LM folder such as a local teacher (ARTE: the policy is that model "
                "with a fresh LoRA from `lora`, the reference the model itself, frozen)."})
    prompt_style: PromptStyle = field(default="student", metadata={
        "help": "The prompt a pair is trained under: student (the start's student prompt, the I-RO target after "
                "it) or teacher (the few-shot prompt a local teacher is given with the gold answer, exactly as "
                "`rationalize teach` renders it, and the rationale as the teacher writes it: pairs from `teach "
                "--prefer-student`, to align the teacher). teacher needs `pairs`."})
    merge: bool = field(default=False, metadata={
        "help": "Also write merged full weights (HF safetensors) into OUT/merged; always done when `sft` is an "
                "HF model folder, so that `rationalize teach --teacher OUT/merged` writes data with the aligned "
                "teacher."})
    rewards: list[str] = field(default_factory=lambda: ["accuracy", "consistency"], metadata={
        "help": "Rewards that rank a question's rationales: accuracy, diversity, consistency, plausibility, "
                "length, or 'module:function' import paths of user rewards.", "nonempty": True})
    reward_weights: dict[str, float] | None = field(default=None, metadata={
        "help": "Per reward, its weight in the combined score (each reward standardized over the pool first); "
                "default 1 each (config file only)."})
    min_margin: float = field(default=0.5, metadata={
        "help": "Smallest combined-score gap between a question's chosen and rejected rationale (in pool "
                "standard deviations); questions without one give no pair.", "range": Range(0, 1e6)})
    pairs: list[str] | None = field(default=None, metadata={
        "help": "Preference pair files (JSONL: id, question, choices, answer, chosen, rejected) to train on "
                "instead of pairs from the pool; the training files are then not read."})
    rounds: int = field(default=1, metadata={
        "help": "Sample-score-pair-train rounds; each round after the first samples from the new policy.",
        "range": Range(1, 10_000)})
    beta: float = field(default=0.1, metadata={
        "help": "DPO's beta: the strength of the implicit KL tie to the reference.", "range": Range(0, 1000, low_open=True)})
    gamma: float = field(default=0.0, metadata={
        "help": "Weight of the chosen completion's mean token NLL added to the DPO loss (TRL's rpo_alpha; the "
                "rationale-enriched DPO code uses 0.1).", "range": Range(0, 1000)})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, weight in (self.reward_weights or {}).items():
            if name not in [r.rpartition(":")[2] for r in self.rewards]:
                raise ConfigError(type(self).__name__, "reward_weights", f"names {name!r}, which is not among the rewards")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
                raise ConfigError(type(self).__name__, "reward_weights", f"{name!r} needs a finite number")
        if self.pairs is not None and not self.pairs:
            raise ConfigError(type(self).__name__, "pairs", "must name at least one pair file, or be left out")
        if self.pairs and self.rounds > 1:
            raise ConfigError(type(self).__name__, "rounds",
                              "must be 1 with `pairs` (later rounds sample from the policy, which needs the pool)")
        if self.prompt_style == "teacher" and not self.pairs:
            raise ConfigError(type(self).__name__, "prompt_style",
                              "teacher needs `pairs` (the pool's rationales are sampled under the student prompt)")

    def weight_of(self, reward: str) -> float:
        """A reward's weight in the combined score (1 unless ``reward_weights`` says otherwise)."""
        return float((self.reward_weights or {}).get(reward, 1.0))
