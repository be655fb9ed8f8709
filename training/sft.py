"""Supervised distillation with LoRA: I-RO targets, multi-task and counterfactual objectives.

One loop for one process or many (``accelerate launch``: DDP, each process
takes every n-th batch). Evaluation every ``eval_every`` steps measures dev
loss and greedy dev accuracy through ``rationalize eval``'s code; the best
adapter is kept and early stopping watches dev accuracy. Checkpoints every
``checkpoint_every`` steps let ``resume`` continue after a kill.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rationalizer.atomic import atomic_write_text
from rationalizer.config_file import save_config
from rationalizer.dataset import Example
from rationalizer.progress import Progress

from .config import LoraSettings, SFTConfig
from .precision import choose_precision
from .items import TrainItem, build_items, template_for

logger = logging.getLogger(__name__)


@dataclass
class Student:
    """The model being trained and what goes with it."""

    model: Any
    tokenizer: Any
    template: Any
    base: str


def with_fresh_lora(path, settings: LoraSettings) -> tuple[Any, Any]:
    """(the HF causal LM in ``path`` in fp32 master weights with a fresh LoRA adapter, its tokenizer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # local files only: nothing is downloaded at run time, and a missing base must not look like a network error
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=torch.float32,
                                                 local_files_only=True)
    lora = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora), tokenizer


def load_student(config: SFTConfig) -> Student:
    """Base model (fp32 master weights) with a fresh LoRA adapter."""
    from .base_student import resolve_or_build

    model, tokenizer = with_fresh_lora(resolve_or_build(config.base), config.lora)
    return Student(model, tokenizer, template_for(tokenizer, objective=config.objective), config.base)


def read_training_files(paths: list[str], limit: int | None, drop_teacher_incorrect: bool = True,
                        limits: list[int] | None = None, max_per_question: int | None = None) -> list[Example]:
    """Rows of the training files: per file, the first ``limits[i]`` (else ``limit``) usable ones,
    at most ``max_per_question`` of them for one question."""
    from rationalizer.errors import UserError

    from .data import read_dataset

    if limits is not None and len(limits) != len(paths):
        raise UserError(f"train_limits has {len(limits)} entries for {len(paths)} training files")
    examples: list[Example] = []
    for i, path in enumerate(paths):
        rows, _ = read_dataset(path)
        if drop_teacher_incorrect:
            rows = [r for r in rows if r.teacher_correct is not False]
        if max_per_question:
            seen: dict[tuple[str, str | None], int] = {}
            kept = []
            for r in rows:
                key = (r.question.strip().lower(), r.kind)
                seen[key] = seen.get(key, 0) + 1
                if seen[key] <= max_per_question:
                    kept.append(r)
            rows = kept
        n = (limits[i] or None) if limits is not None else limit
        examples.extend(rows[:n])
    return examples


def training_examples(config: SFTConfig) -> list[Example]:
    """The training rows a config selects."""
    return read_training_files(config.train, config.train_limit, config.drop_teacher_incorrect,
                               config.train_limits, config.max_per_question)


def policy_rationalizer(student: Student, folder: Path, max_new_tokens: int, control=None):
    """A :class:`Rationalizer` over the model in memory, for evaluation during training."""
    from rationalizer import Rationalizer
    from rationalizer.manifest import ControlScheme, GenerationDefaults, Manifest, ParserSettings

    from .bundle_out import context_length

    manifest = Manifest(name="policy", base_model=student.base, files={}, prompt=student.template,
                        control=control or ControlScheme(), parser=ParserSettings(strategies=["marker"]),
                        generation=GenerationDefaults(max_new_tokens=max_new_tokens,
                                                      context_length=context_length(student.model)))
    return Rationalizer.from_model(student.model, student.tokenizer, manifest, folder)


def evaluate_dev(student: Student, dev_items: list[TrainItem], dev_examples: list[Example], config: SFTConfig,
                 folder: Path) -> dict[str, float]:
    """Dev loss (teacher-forced) and greedy dev accuracy on a sample."""
    import torch

    from rationalizer.evaluation import EvalConfig, Judges, evaluate

    from .batches import collate, weighted_loss

    model = student.model
    model.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(dev_items), config.batch_size):
            batch = collate(dev_items[start : start + config.batch_size], student.tokenizer.pad_token_id)
            out = model(input_ids=batch["input_ids"].to(model.device), attention_mask=batch["attention_mask"].to(model.device))
            losses.append(float(weighted_loss(out.logits, batch["labels"].to(model.device), torch.ones_like(batch["weights"]))[0]))
    sample = [e for e in dev_examples if e.kind == "factual"][: config.eval_samples]
    eval_config = EvalConfig(data=config.dev or "", simulator="none", verifier="none", faithfulness=False,
                             max_new_tokens=config.max_new_tokens, seed=config.seed)
    run = evaluate(policy_rationalizer(student, folder, config.max_new_tokens), sample, eval_config, Judges())
    model.train()
    metrics = run.summary["metrics"]
    # None (printed n/a) where a figure cannot be computed: without a dev rationale there is no loss
    return {"dev_loss": sum(losses) / len(losses) if losses else None,
            "dev_accuracy": metrics["accuracy"]["value"] if sample else None,
            "dev_unparseable": metrics["unparseable_rate"]["value"] if sample else None}


def train_sft(config: SFTConfig, resume: bool = False, progress: Progress | None = None) -> Path:
    """Train, and write the bundle to ``config.out``; returns the bundle folder.

    ``progress`` counts the optimizer steps (with loss and trained tokens/s); messages go to this module's logger.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = Path(config.out)
    import torch

    precision, why = choose_precision(config.precision,
                                      "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum,
                              mixed_precision="bf16" if precision == "bf16" else "no",
                              cpu=config.device == "cpu")
    set_seed(config.seed)
    student = load_student(config)
    if accelerator.is_main_process:
        logger.info("precision: %s (%s); %s", precision, why,
                    "packed batches, logits at target positions only" if config.packing else "padded batches")
    examples = training_examples(config)
    items, stats = build_items(examples, student.tokenizer, student.template, config.objective,
                               config.multitask_alpha, config.counterfactual_alpha, config.max_length)
    if not items:
        from rationalizer.errors import UserError

        raise UserError(f"no training items: {stats.no_rationale} rows have no rationale, {stats.too_long} are too long")
    dev_examples = read_training_files([config.dev], None) if config.dev else []
    dev_items = build_items(dev_examples[: config.eval_samples], student.tokenizer, student.template,
                            config.objective, max_length=config.max_length)[0] if dev_examples else []
    if dev_examples and not dev_items and not any(e.kind == "factual" for e in dev_examples):
        logger.warning("%s: no row gives a dev loss (none has a rationale) or accuracy (none is factual); "
                       "training without evaluation", config.dev)
        dev_examples = []
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "train_config.json")
        logger.info("%d training sequences %s; dropped %d too long, %d without rationale", len(items), stats.tasks,
                    stats.too_long, stats.no_rationale)
    from .loop import run_training

    result = run_training(accelerator, student, items, config, out, resume, progress,
                          evaluate=(lambda: evaluate_dev(student, dev_items, dev_examples, config, out)) if dev_examples else None,
                          label="sft")
    if accelerator.is_main_process:
        from .bundle_out import write_bundle
        from .plots import plot_metrics

        model = accelerator.unwrap_model(student.model)
        if result.get("best_adapter"):
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(model, load_file(result["best_adapter"]))
        write_bundle(out, model, student.tokenizer, name=out.name, base=config.base, template=student.template,
                     provenance={"trainer": "sft", "objective": config.objective, "train_files": config.train,
                                 "items": stats.tasks, "steps": result["step"], "wall_time_s": result["wall_time_s"],
                                 "trained_tokens": result["trained_tokens"]},
                     eval_results={k: v for k, v in result.items() if k.startswith("best_dev")},
                     merge=config.merge, max_new_tokens=config.max_new_tokens)
        plot_metrics(out / "metrics.jsonl", out / "metrics.png")
        atomic_write_text(out / "train_result.json", json.dumps(result, indent=2))
    accelerator.wait_for_everyone()
    return out
