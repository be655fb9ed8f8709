"""Direct preference optimization over an SFT (or MaRio) bundle, in rounds: the self-improvement loop.

Each round builds, per question, a pair of a chosen and a rejected rationale from MaRio's pool (the
teacher's rationales plus ``samples_per_question`` samples of the current policy, scored by the
rewards): the entries' combined score is the weighted sum of each reward standardized over the pool
(so rewards of different scales combine), and a question gives its best and worst entry when their
scores are ``min_margin`` apart. Pair files (:mod:`.dpo_pairs`) can stand in for the pool.

The loss is DPO's sigmoid loss, ``-log σ(β·[(log π(c) − log π(r)) − (log π_ref(c) − log π_ref(r))])``
with sequence log-probabilities summed over the completion (the I-RO target after the bundle's
prompt and codes), plus ``γ`` times the chosen completions' mean token NLL (TRL's ``rpo_alpha``, the
rationale-enriched DPO term). The reference is the start bundle's policy, frozen: its sequence
log-probabilities are computed once per round, when the pairs are fixed, and looked up at each step.
A batch holds ``batch_size`` pairs, chosen and rejected packed into one forward pass.

ARTE's teacher alignment is the same loop started from a local teacher's HF folder (a fresh LoRA; the
reference is the policy with its adapter switched off, which is exactly the start's weights) on the pairs
``rationalize teach --prefer-student`` writes, with ``prompt_style: teacher``: each pair is tokenized under
the few-shot prompt the teacher was given (:func:`.teachers.local.teacher_prompt`) and the completion is
the rationale as the teacher writes it. Such a run always writes merged weights, OUT/merged, which
``rationalize teach --teacher OUT/merged`` loads as the aligned teacher.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from rationalizer import Bundle
from rationalizer.atomic import atomic_write_text
from rationalizer.config_file import save_config
from rationalizer.dataset import Example
from rationalizer.errors import UserError
from rationalizer.manifest import MANIFEST_NAME, ControlScheme
from rationalizer.progress import Progress
from rationalizer.prompt_text import transformers_encoder
from rationalizer.prompting import CodePlacement, format_target, render_codes

from .config import DPOConfig
from .dpo_pairs import PreferencePair, read_pairs, write_pairs
from .items import IGNORE, TrainItem, build_items
from .mario_pool import load_pool, pool_rows, question_key, questions_of, save_pool, teacher_samples
from .rewards import Sample
from .sft import Student

logger = logging.getLogger(__name__)


@dataclass
class PairItem:
    """A pair's two token sequences (the same prompt, different completions)."""

    chosen: TrainItem
    rejected: TrainItem

    @property
    def input_ids(self) -> list[int]:
        """Both sequences' tokens: what length grouping sorts batches by."""
        return self.chosen.input_ids + self.rejected.input_ids


def combined_scores(scores: Sequence[dict[str, float]], weight_of: Callable[[str], float]) -> list[float]:
    """Per entry, Σ over rewards of weight × (value − pool mean) / pool std (0 where a reward does not vary)."""
    if not scores:
        return []
    totals = [0.0] * len(scores)
    for name in scores[0]:
        values = [s[name] for s in scores]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        if std <= 1e-12:
            continue
        for i, v in enumerate(values):
            totals[i] += weight_of(name) * (v - mean) / std
    return totals


def pool_pairs(pool: Sequence[Sample], cache: dict[int, dict[str, float]], weight_of: Callable[[str], float],
               min_margin: float) -> list[PreferencePair]:
    """Per question, its best usable entry against its worst, when their combined scores differ by at least
    ``min_margin`` (and at all); questions with fewer than two usable entries give none."""
    from .mario import usable

    kept = [i for i, s in enumerate(pool) if usable(s)]
    totals = dict(zip(kept, combined_scores([cache[i] for i in kept], weight_of)))
    groups: dict[str, list[int]] = {}
    for i in kept:
        groups.setdefault(question_key(pool[i].example), []).append(i)
    pairs = []
    for members in groups.values():
        best = max(members, key=lambda i: totals[i])
        worst = min(members, key=lambda i: totals[i])
        gap = totals[best] - totals[worst]
        if len(members) < 2 or gap <= 0 or gap < min_margin:
            continue
        ex, chosen, rejected = pool[members[0]].example, pool[best], pool[worst]
        pairs.append(PreferencePair(ex.id, ex.question, ex.choices, ex.answer, chosen.rationale, rejected.rationale,
                                    totals[best], totals[worst], f"{chosen.source}>{rejected.source}",
                                    chosen.answer, rejected.answer))
    return pairs


def teacher_items(pairs: Sequence[PreferencePair], tokenizer) -> list[TrainItem]:
    """Per pair, its chosen then its rejected sequence under the teacher's prompt for the gold answer
    (:func:`.teachers.local.teacher_prompt`, encoded as :class:`.teachers.local.LocalTeacher` encodes it),
    the completion being the rationale and answer marker as the teacher writes them, then EOS."""
    from .teachers.local import teacher_prompt

    encoder = transformers_encoder(tokenizer)
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    # the plain few-shot text ends "Explanation:" and its demos continue with a space; a chat turn starts bare
    lead = "" if getattr(tokenizer, "chat_template", None) else " "
    items = []
    for p in pairs:
        prompt = encoder.encode(teacher_prompt(tokenizer, Example(p.id, p.question, p.answer, p.choices), p.answer))
        for text, answer in ((p.chosen, p.chosen_answer), (p.rejected, p.rejected_answer)):
            completion = encoder.encode(lead + format_target(text, answer or p.answer), add_special=False) + end
            items.append(TrainItem(prompt + completion, [IGNORE] * len(prompt) + completion, 1.0, "factual"))
    return items


def pair_items(pairs: Sequence[PreferencePair], tokenizer, template, max_length: int, codes: str = "",
               placement: CodePlacement = "user",
               style: str = "student") -> tuple[list[PairItem], list[PreferencePair]]:
    """The pairs as token sequences, and the pairs kept: a pair goes when either sequence is longer than
    ``max_length``. The student style builds them as SFT and MaRio build theirs (:func:`.items.build_items`),
    the teacher style as :func:`teacher_items` does (``template`` and codes unused)."""
    if style == "teacher":
        items = teacher_items(pairs, tokenizer)
    else:
        examples = [Example(p.id, p.question, answer or p.answer, p.choices, text) for p in pairs
                    for text, answer in ((p.chosen, p.chosen_answer), (p.rejected, p.rejected_answer))]
        items, _ = build_items(examples, tokenizer, template, "iro", max_length=10**9,
                               codes=[codes] * len(examples) if codes else None, placement=placement)
    out, kept = [], []
    for pair, chosen, rejected in zip(pairs, items[0::2], items[1::2]):
        if max(len(chosen.input_ids), len(rejected.input_ids)) <= max_length:
            out.append(PairItem(chosen, rejected))
            kept.append(pair)
    return out, kept


def sequence_logps(logits, batch, n: int):
    """(``[n]`` summed target log-probabilities per packed sequence, ``[K]`` per target token)."""
    import torch

    token = -torch.nn.functional.cross_entropy(logits.float(), batch.targets, reduction="none")
    return torch.zeros(n, device=token.device, dtype=token.dtype).index_add_(0, batch.target_item, token), token


def _packed(pairs: Sequence[PairItem], device):
    from .packing import pack

    return pack([item for p in pairs for item in (p.chosen, p.rejected)]).to(device)


def reference_logps(reference, pairs: Sequence[PairItem], batch_size: int, device, autocast=None):
    """``[n_pairs, 2]`` the frozen reference's (chosen, rejected) sequence log-probabilities, on the CPU."""
    import contextlib

    import torch

    from .packing import target_logits

    out = []
    reference.eval()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        batch = _packed(chunk, device)
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            logits = target_logits(reference, batch)
        out.append(sequence_logps(logits, batch, 2 * len(chunk))[0].view(-1, 2).cpu())
    return torch.cat(out) if out else torch.zeros(0, 2)


def dpo_pair_loss(model, pairs: Sequence[PairItem], reference, beta: float, gamma: float, device):
    """(DPO sigmoid loss + γ·chosen mean token NLL, target tokens) of a batch of pairs; ``reference`` holds
    their ``[n, 2]`` reference log-probabilities."""
    import torch

    from .packing import target_logits

    batch = _packed(pairs, device)
    logits = target_logits(model, batch)
    seq, token = sequence_logps(logits, batch, 2 * len(pairs))
    ref = reference.to(seq.device, seq.dtype)
    margin = (seq[0::2] - seq[1::2]) - (ref[:, 0] - ref[:, 1])
    loss = -torch.nn.functional.logsigmoid(beta * margin).mean()
    if gamma > 0:  # chosen sequences sit at even packing positions
        loss = loss + gamma * -token[batch.target_item % 2 == 0].mean()
    return loss, int(batch.targets.numel())


class StartWeights:
    """The policy with its LoRA switched off, the frozen reference of a run started from an HF model: the
    start's exact weights without a second copy of the model (its base weights never train)."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def eval(self) -> "StartWeights":
        """Already evaluated in eval mode, call by call."""
        return self

    def to(self, device) -> "StartWeights":
        """The policy's device is the reference's."""
        return self

    def __call__(self, **inputs):
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.policy.disable_adapter():
                return self.policy(**inputs)
        finally:
            self.policy.train(was_training)


def hf_start(spec: str) -> Path | None:
    """``spec`` as an HF causal LM folder (``config.json``, no bundle manifest); None: a bundle."""
    from rationalizer.bundle import EMBEDDED

    folder = Path(spec).expanduser()
    if spec in EMBEDDED or not folder.is_dir() or (folder / MANIFEST_NAME).exists():
        return None
    if not (folder / "config.json").is_file():
        raise UserError(f"--sft {spec}: {folder} holds neither {MANIFEST_NAME} (a bundle) nor config.json "
                        "(an HF model folder)")
    return folder.resolve()


def load_start(config: DPOConfig) -> tuple[Student, Any, ControlScheme]:
    """(trainable policy, frozen reference, control scheme) of the start ``config.sft``: a bundle's policy
    and its merged copy (:func:`.mario.load_policy`), or an HF model with a fresh LoRA and itself."""
    from .items import template_for
    from .mario import load_policy
    from .sft import with_fresh_lora

    folder = hf_start(config.sft)
    if folder is None:
        scheme: ControlScheme = Bundle.load(config.sft).manifest.control
        student, reference = load_policy(config.sft)
        return student, reference, scheme
    model, tokenizer = with_fresh_lora(folder, config.lora)
    for adapter_config in model.peft_config.values():
        adapter_config.base_model_name_or_path = str(folder)  # the adapter names the folder, not a hub id
    return Student(model, tokenizer, template_for(tokenizer), str(folder)), StartWeights(model), ControlScheme()


def train_dpo(config: DPOConfig, resume: bool = False, progress: Progress | None = None) -> Path:
    """Run the rounds and write the bundle to ``config.out`` (see the module docstring).

    ``progress`` counts each round's optimizer steps anew; messages go to this module's logger.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save

    from rationalizer.atomic import atomic_write_bytes

    from .bundle_out import write_bundle
    from .loop import _log, rewind_log, run_training
    from .mario import sample_policy, score_pool
    from .plots import plot_metrics
    from .precision import autocast_factory, choose_precision
    from .rewards import build_rewards

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "train_config.json")
    set_seed(config.seed)
    # a bad pair file is refused before any model loads
    given = [p for path in config.pairs for p in read_pairs(path)] if config.pairs else None
    student, reference, scheme = load_start(config)
    from_hf = hf_start(config.sft) is not None
    codes = render_codes(scheme, scheme.default) if scheme.rewards else ""  # a MaRio bundle stays steerable
    # the device without an Accelerator: accelerate's process-wide state takes the mixed precision of the
    # first one built, so a probe without it would refuse the bf16 one each round builds
    device = torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    precision, why = choose_precision(config.precision, device.type)
    logger.info("precision: %s (%s)", precision, why)
    autocast = autocast_factory(precision, device.type)
    student.model.to(device)
    reference.to(device)
    pool: list[Sample] = []
    questions: list[Example] = []
    if not config.pairs:
        rewards = build_rewards(config.rewards, config.judge, config.length_target)
        rows = pool_rows(config)
        questions = questions_of(rows)
        random.Random(config.seed).shuffle(questions)
        pool = teacher_samples(rows)
    cache: dict[int, dict[str, float]] = {}
    log, progress_file = out / "metrics.jsonl", out / "rounds.json"
    state = json.loads(progress_file.read_text()) if resume and progress_file.exists() else {"rounds": 0}
    done_rounds, per_round = state["rounds"], list(state.get("pairs_per_round", []))
    if done_rounds:
        set_peft_model_state_dict(student.model, load_file(str(out / f"round-{done_rounds}" / "adapter.safetensors")))
        if not config.pairs:
            pool = load_pool(out / "pool.jsonl")
        rewind_log(log, lambda row: row.get("round", 0) <= done_rounds)
        logger.info("resumed after round %d", done_rounds)
    elif log.exists():
        log.unlink()
    for round_no in range(done_rounds + 1, config.rounds + 1):
        # a pool round's row holds the policy's reward means (what the metrics plot draws); a file round's none
        row: dict[str, Any] = {"kind": "pairs" if given is not None else "round", "round": round_no}
        round_out = out / f"round-{round_no}"
        # a round killed after its pairs were fixed resumes on them: sampling and scoring are most of its cost
        fixed = round_out / "pairs.jsonl"
        if given is not None:
            pairs = given
        elif resume and all((round_out / f).exists() for f in ("pairs.jsonl", "pool.jsonl", "round.json")):
            pairs = read_pairs(str(fixed))
            pool = load_pool(round_out / "pool.jsonl")
            cache = {}
            row.update(json.loads((round_out / "round.json").read_text()), resumed_pairs=True)
            logger.info("round %d: resumed on its %d fixed pairs", round_no, len(pairs))
        else:
            asked = questions
            if config.questions_per_round and config.questions_per_round < len(questions):
                first = (round_no - 1) * config.questions_per_round  # as MaRio: the next questions each round
                asked = [questions[(first + i) % len(questions)] for i in range(config.questions_per_round)]
            k = config.samples_per_question
            fresh = sample_policy(student, asked, codes, scheme.placement, k, config, config.seed + round_no,
                                  progress) if k else []
            pool.extend(fresh)
            score_pool(pool, rewards, cache)
            new = [cache[i] for i in range(len(pool) - len(fresh), len(pool))]
            row["rewards"] = {r.name: sum(s[r.name] for s in new) / max(len(new), 1) for r in rewards}
            row["pool"] = len(pool)
            pairs = pool_pairs(pool, cache, config.weight_of, config.min_margin)
            round_out.mkdir(parents=True, exist_ok=True)
            save_pool(round_out / "pool.jsonl", pool)
            atomic_write_text(round_out / "round.json", json.dumps(row))
        items, pairs = pair_items(pairs, student.tokenizer, student.template, config.max_length, codes,
                                  scheme.placement, config.prompt_style)
        if not items:
            raise UserError(f"round {round_no}: no preference pairs (no question has two usable rationales "
                            f"{config.min_margin} apart in combined score): lower min_margin, sample more per "
                            "question, or give pair files")
        round_out.mkdir(parents=True, exist_ok=True)
        write_pairs(fixed, pairs)
        row["pairs"] = len(items)
        _log(log, row)
        logger.info("round %d: %d preference pairs", round_no, len(items))
        # the pairs are fixed for the round and the reference frozen: its log-probabilities once, not every step
        ref = reference_logps(reference, items, config.batch_size, device, autocast)
        accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum,
                                  mixed_precision="bf16" if precision == "bf16" else "no",
                                  cpu=config.device == "cpu")

        def loss_fn(model, batch_pairs, indices, on):
            return dpo_pair_loss(model, batch_pairs, ref[indices], config.beta, config.gamma, on)

        run_training(accelerator, student, items, replace(config, out=str(round_out)), round_out, resume,
                     progress, None, label=f"dpo round {round_no}", loss_fn=loss_fn)
        offset = (round_no - 1) * config.steps_per_round
        for line in (round_out / "metrics.jsonl").read_text().splitlines():
            step = json.loads(line)
            _log(log, {**step, "step": step["step"] + offset, "round": round_no})
        atomic_write_bytes(round_out / "adapter.safetensors", save(
            {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(student.model).items()}))
        if not config.pairs:
            save_pool(out / "pool.jsonl", pool)
        per_round = per_round[:round_no - 1] + [len(items)]
        atomic_write_text(progress_file, json.dumps({"rounds": round_no, "pairs_per_round": per_round}))
    write_bundle(out, student.model, student.tokenizer, name=out.name, base=student.base, template=student.template,
                 control=scheme, provenance={"trainer": "dpo", "stage": "dpo", "start": config.sft,
                                             "start_kind": "hf" if from_hf else "bundle",
                                             "prompt_style": config.prompt_style,
                                             "pairs": list(config.pairs) if config.pairs else "pool",
                                             "rewards": config.rewards, "reward_weights": config.reward_weights,
                                             "min_margin": config.min_margin, "beta": config.beta,
                                             "gamma": config.gamma, "rounds": config.rounds,
                                             "pairs_per_round": per_round, "questions": len(questions)},
                 merge=config.merge or from_hf, max_new_tokens=config.max_new_tokens)
    plot_metrics(log, out / "metrics.png")
    return out
