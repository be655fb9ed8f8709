"""From examples to token sequences with labels and loss weights.

Targets follow the I-RO format (:func:`rationalizer.prompting.format_target`) and
the loss covers the completion only. Distilling step-by-step's multi-task
variant adds an answer-only task under its own prefix; SCOTT's counterfactual
rows teach the answer to follow the rationale (loss on the answer tokens only).
Weights make the mean over items equal the paper's weighted sum of objectives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rationalizer.dataset import Example
from rationalizer.manifest import PromptTemplate
from rationalizer.prompt_text import PromptEncoder, transformers_encoder
from rationalizer.prompting import CodePlacement, build_prompt, format_target

EXPLAIN_PREFIX = "[explain] "
ANSWER_PREFIX = "[answer] "
COUNTERFACTUAL_PREFIX = "[counterfactual] "
IGNORE = -100


@dataclass
class TrainItem:
    """One training sequence: tokens, labels (IGNORE where no loss) and the item's loss weight."""

    input_ids: list[int]
    labels: list[int]
    weight: float
    task: str
    codes: str = ""


@dataclass
class ItemStats:
    """What building the items did: counts per task and rows dropped."""

    tasks: dict[str, int] = field(default_factory=dict)
    too_long: int = 0
    no_rationale: int = 0


def template_for(tokenizer, system: str = "You are a helpful assistant.", objective: str = "iro") -> PromptTemplate:
    """The bundle's prompt template, with the chat wrapper taken from the tokenizer's chat template.

    The wrapper is rendered once with placeholders, so the runtime rebuilds the
    exact same text without a template engine.
    """
    chat = "{system}\n\n{user}\n"
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": "\x00S\x00"}, {"role": "user", "content": "\x00U\x00"}],
            tokenize=False, add_generation_prompt=True)
        chat = text.replace("{", "{{").replace("}", "}}").replace("\x00S\x00", "{system}").replace("\x00U\x00", "{user}")
        if tokenizer.bos_token and getattr(tokenizer, "add_bos_token", False) and chat.startswith(tokenizer.bos_token):
            chat = chat[len(tokenizer.bos_token):]  # the tokenizer adds BOS itself
    prefix = EXPLAIN_PREFIX if objective == "multitask" else ""
    stop = [tokenizer.eos_token] if tokenizer.eos_token else []
    return PromptTemplate(chat=chat, system=system, user=prefix + "{codes}{question}{choices}", stop=stop)


def _encode(encoder: PromptEncoder, prompt: str, context: str, supervised: str,
            end: list[int]) -> tuple[list[int], list[int]]:
    """Prompt (control tokens from the template only), unsupervised context and supervised text, all data
    text tokenized as plain text; ``end`` (the end-of-turn id) closes the supervised part."""
    p = encoder.encode(prompt)
    c = encoder.encode(context, add_special=False) if context else []
    s = encoder.encode(supervised, add_special=False) + end
    return p + c + s, [IGNORE] * (len(p) + len(c)) + s


def build_items(examples: Sequence[Example], tokenizer, template: PromptTemplate, objective: str = "iro",
                multitask_alpha: float = 0.5, counterfactual_alpha: float = 0.5, max_length: int = 384,
                codes: Sequence[str] | None = None,
                placement: CodePlacement = "user") -> tuple[list[TrainItem], ItemStats]:
    """Training items for the objective; ``codes[i]`` is the control-code text of example i (MaRio), placed
    as ``placement`` says (:func:`rationalizer.prompting.build_prompt`)."""
    encoder = transformers_encoder(tokenizer)
    # the one token the model learns to end its answer with: the tokenizer's EOS (end of turn), not the set
    # of ids generation stops on (rationalizer.backends.stop_ids), which may hold more than one
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stats = ItemStats()
    items: list[TrainItem] = []
    for i, ex in enumerate(examples):
        code = codes[i] if codes else ""
        if not ex.rationale:
            stats.no_rationale += 1
            continue
        answer_only = format_target("", ex.answer)
        if ex.kind == "counterfactual":
            prompt = build_prompt(_prefixed(template, COUNTERFACTUAL_PREFIX), ex.question, ex.choices, code, placement)
            # the rationale is unsupervised context here: the space format_target puts between it and
            # the marker starts the supervised part, as it does inside a factual target
            seqs = [("counterfactual", *_encode(encoder, prompt, ex.rationale.strip(), " " + answer_only, end))]
        else:
            prompt = build_prompt(template, ex.question, ex.choices, code, placement)
            seqs = [("factual", *_encode(encoder, prompt, "", format_target(ex.rationale, ex.answer), end))]
            if objective == "multitask":
                answer_template = _prefixed(template, ANSWER_PREFIX, replace=EXPLAIN_PREFIX)
                answer_prompt = build_prompt(answer_template, ex.question, ex.choices, code, placement)
                seqs.append(("answer_task", *_encode(encoder, answer_prompt, "", answer_only, end)))
        for task, ids, labels in seqs:
            if len(ids) > max_length:
                stats.too_long += 1
                continue
            items.append(TrainItem(ids, labels, 1.0, task, code))
            stats.tasks[task] = stats.tasks.get(task, 0) + 1
    _set_weights(items, objective, multitask_alpha, counterfactual_alpha)
    return items, stats


def _prefixed(template: PromptTemplate, prefix: str, replace: str = "") -> PromptTemplate:
    user = template.user[len(replace):] if replace and template.user.startswith(replace) else template.user
    return PromptTemplate(template.chat, template.system, prefix + user, template.choices_block,
                          template.choice_item, template.choice_separator, list(template.stop))


def _set_weights(items: list[TrainItem], objective: str, multitask_alpha: float, counterfactual_alpha: float) -> None:
    """Per-item weights w with mean(w·loss) = Σ_task share_task · E[loss | task]."""
    shares: dict[str, float] = {"factual": 1.0}
    if objective == "multitask":
        shares = {"factual": 1 - multitask_alpha, "answer_task": multitask_alpha}
    if any(item.task == "counterfactual" for item in items):
        shares = {k: v * (1 - counterfactual_alpha) for k, v in shares.items()}
        shares["counterfactual"] = counterfactual_alpha
    counts: dict[str, int] = {}
    for item in items:
        counts[item.task] = counts.get(item.task, 0) + 1
    total = len(items)
    for item in items:
        item.weight = shares.get(item.task, 0.0) * total / counts[item.task]
