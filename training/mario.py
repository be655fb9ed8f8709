"""Multi-reward training (MaRio, on Quark's loop) over an SFT student.

Each round: sample ``k`` rationales per question from the current policy, add
them to a pool that starts with the teacher's rationales, score the pool with
every reward, cut each reward into equal-count quantile bins (a bin is a
control-code level), and train on ``codes + question -> rationale + answer``
with ``NLL + β·KL(policy || reference) - γ·entropy``; the codes sit in the
prompt, so they carry no loss. The bundle records the scheme (rewards, bin
edges, code text, best levels) that ``Rationalizer.rationalize(quality=...)`` offers.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rationalizer import Bundle, base_model
from rationalizer.atomic import atomic_write_text
from rationalizer.config_file import save_config
from rationalizer.dataset import Example
from rationalizer.manifest import ControlScheme, ParserSettings, RewardLevels
from rationalizer.metrics import answers_match
from rationalizer.progress import Progress
from rationalizer.prompting import parse_answer, render_codes

from .batches import left_padded
from .binning import quantile_edges, rank_levels
from .packing import target_logits
from .precision import autocast_factory, choose_precision
from .reference import ReferenceTopK, compute_reference, topk_kl
from .config import MarioConfig
from .items import IGNORE, build_items
from .rewards import Reward, Sample, build_rewards
from .sft import Student, training_examples

logger = logging.getLogger(__name__)

CORRECT = "correct"


def load_policy(sft_bundle: str) -> tuple[Student, Any]:
    """(trainable policy initialised from the SFT adapter, frozen merged reference)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bundle = Bundle.load(sft_bundle)
    bundle.verify("peft")
    base = base_model.resolve(bundle.manifest.base_model)
    with bundle.staged("peft") as adapter:  # only the listed adapter files, just verified
        tokenizer = AutoTokenizer.from_pretrained(base_model.tokenizer_folder(adapter, base, label=bundle.folder),
                                                  local_files_only=True)
        policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, use_safetensors=True,
                                                                               dtype=torch.float32,
                                                                               local_files_only=True),
                                           adapter, is_trainable=True, local_files_only=True)
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, use_safetensors=True,
                                                                                  dtype=torch.float32,
                                                                                  local_files_only=True),
                                              adapter, local_files_only=True)
    reference = reference.merge_and_unload().eval().requires_grad_(False)
    return Student(policy, tokenizer, bundle.manifest.prompt, bundle.manifest.base_model), reference


def sample_policy(student: Student, examples: list[Example], codes: str, k: int, config: MarioConfig,
                  seed: int) -> list[Sample]:
    """``k`` sampled rationales per question from the policy, batched, with the answer each leads to."""
    import torch

    from rationalizer.backends.stop_ids import hf_stop_token_ids
    from rationalizer.prompt_text import transformers_encoder
    from rationalizer.prompting import build_prompt

    tok, model = student.tokenizer, student.model
    encoder = transformers_encoder(tok)
    torch.manual_seed(seed)
    # the ids the runtime stops on, so a sampled rationale ends where the bundle's generation would
    stop = sorted(hf_stop_token_ids(model, tok, student.template.stop))
    samples: list[Sample] = []
    model.eval()
    for start in range(0, len(examples), config.batch_size):
        batch = examples[start : start + config.batch_size]
        input_ids, attention_mask = left_padded(
            [encoder.encode(build_prompt(student.template, e.question, e.choices, codes)) for e in batch],
            tok.pad_token_id, model.device)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=True,
                                 temperature=config.sample_temperature,
                                 top_p=config.sample_top_p, max_new_tokens=config.max_new_tokens,
                                 num_return_sequences=k, pad_token_id=tok.pad_token_id, eos_token_id=stop)
        texts = tok.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
        for i, text in enumerate(texts):
            ex = batch[i // k]
            parsed = parse_answer(text, ex.choices, ParserSettings(strategies=["marker"]))
            samples.append(Sample(ex, parsed.rationale, parsed.answer, "policy"))
    model.train()
    return samples


def teacher_samples(examples: list[Example]) -> list[Sample]:
    """The data's rationales as pool entries, with the answer the teacher gave (gold unless recorded)."""
    out = []
    for e in examples:
        if e.rationale and e.kind == "factual":
            out.append(Sample(e, e.rationale, e.teacher_answer or e.answer, "teacher"))
    return out


def score_pool(pool: list[Sample], rewards: list[Reward], cache: dict[int, dict[str, float]]) -> None:
    """Score entries not scored yet (rewards are deterministic, so old scores stay valid)."""
    todo = [i for i in range(len(pool)) if i not in cache]
    for reward in rewards:
        values = reward.score([pool[i] for i in todo])
        for i, v in zip(todo, values):
            cache.setdefault(i, {})[reward.name] = float(v)


def control_scheme(rewards: list[Reward], scores: list[dict[str, float]], bins: int,
                   correctness: bool = False) -> ControlScheme:
    """Bin edges from the pool's scores; the default selection is the best level of every reward."""
    levels = [RewardLevels(r.name, bins, f"quantile bins of {r.name} over the training pool",
                           quantile_edges([s[r.name] for s in scores], bins)) for r in rewards]
    scheme = ControlScheme(rewards=levels, default={r.name: bins for r in rewards})
    if correctness:
        scheme.rewards.append(RewardLevels(CORRECT, 2, "1: the answer was wrong, 2: right"))
        scheme.default[CORRECT] = 2
    return scheme


def train_mario(config: MarioConfig, resume: bool = False, progress: Progress | None = None) -> Path:
    """Run the rounds and write the bundle to ``config.out``.

    ``progress`` counts each round's optimizer steps anew; messages go to this module's logger.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .bundle_out import write_bundle
    from .loop import _log, rewind_log, run_training
    from .plots import plot_metrics

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "train_config.json")
    set_seed(config.seed)
    student, reference = load_policy(config.sft)
    device = Accelerator(cpu=config.device == "cpu").device
    precision, why = choose_precision(config.precision, device.type)
    logger.info("precision: %s (%s)", precision, why)
    autocast = autocast_factory(precision, device.type)
    packed = config.packing
    cached: list[ReferenceTopK | None] = [None]  # this round's reference distribution
    student.model.to(device)  # sampling runs before the first prepare(); the reference never goes through it
    reference.to(device)
    rewards = build_rewards(config.rewards, config.judge, config.length_target)
    examples = [e for e in training_examples(config) if e.kind == "factual"]
    random.Random(config.seed).shuffle(examples)  # each round's questions mix every training file
    pool = teacher_samples(examples)
    cache: dict[int, dict[str, float]] = {}
    log = out / "metrics.jsonl"
    progress_file = out / "rounds.json"
    done_rounds = json.loads(progress_file.read_text())["rounds"] if resume and progress_file.exists() else 0
    if done_rounds:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(student.model, load_file(str(out / f"round-{done_rounds}" / "adapter.safetensors")))
        pool = [Sample(Example(**row["example"]), row["rationale"], row["answer"], row["source"])
                for row in map(json.loads, (out / "pool.jsonl").read_text().splitlines())]
        rewind_log(log, lambda row: row.get("round", 0) <= done_rounds)  # rows of the round that was cut off
        logger.info("resumed after round %d", done_rounds)
    elif log.exists():
        log.unlink()
    scheme = ControlScheme()
    if done_rounds:  # the scheme the finished rounds trained with, to sample the next round with its best codes
        score_pool(pool, rewards, cache)
        scheme = control_scheme(rewards, [cache[i] for i, s in enumerate(pool) if s.answer is not None
                                          and s.rationale.strip()], config.bins, config.correctness_code)

    def kl_entropy(model, batch, logits, indices):
        """β·KL(policy‖reference) − γ·entropy, averaged over the target tokens (see :mod:`.reference`)."""
        if packed:  # logits [K, V] at the target positions
            logp = torch.log_softmax(logits.float(), dim=-1)
            mask = torch.ones(logp.shape[:-1], device=logp.device)
        else:
            mask = (batch["labels"][:, 1:] != IGNORE).float()
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        term = torch.zeros((), device=logp.device)
        if config.beta > 0:
            if cached[0] is not None:
                kl = topk_kl(logp, *cached[0].batch(indices, logp.device))
            else:
                with torch.no_grad(), autocast():
                    if packed:
                        ref = target_logits(reference, batch).float()
                    else:
                        ref = reference(input_ids=batch["input_ids"],
                                        attention_mask=batch["attention_mask"]).logits[:, :-1].float()
                kl = (logp.exp() * (logp - torch.log_softmax(ref, dim=-1))).sum(-1)
            term = term + config.beta * (kl * mask).sum() / mask.sum().clamp(min=1)
        if config.gamma > 0:
            entropy = -(logp.exp() * logp).sum(-1)
            term = term - config.gamma * (entropy * mask).sum() / mask.sum().clamp(min=1)
        return term

    for round_no in range(done_rounds + 1, config.rounds + 1):
        asked = examples
        if config.questions_per_round and config.questions_per_round < len(examples):
            # each round asks the next questions, wrapping around, so rounds see different ones
            first = (round_no - 1) * config.questions_per_round
            asked = [examples[(first + i) % len(examples)] for i in range(config.questions_per_round)]
        best_codes = render_codes(scheme, scheme.default) if scheme.rewards else ""
        fresh = sample_policy(student, asked, best_codes, config.samples_per_question, config, config.seed + round_no)
        pool.extend(fresh)
        score_pool(pool, rewards, cache)
        scores = [cache[i] for i in range(len(pool))]
        new_scores = scores[len(pool) - len(fresh):]
        means = {r.name: sum(s[r.name] for s in new_scores) / max(len(new_scores), 1) for r in rewards}
        _log(log, {"kind": "round", "round": round_no, "rewards": means, "pool": len(pool)})
        logger.info("round %d: policy reward means %s", round_no, ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
        usable = [(s, sc) for s, sc in zip(pool, scores) if s.answer is not None and s.rationale.strip()]
        scheme = control_scheme(rewards, [sc for _, sc in usable], config.bins, config.correctness_code)
        levels = {r.name: rank_levels([sc[r.name] for _, sc in usable], config.bins) for r in rewards}
        if config.correctness_code:
            levels[CORRECT] = [1 + int(answers_match(s.answer, s.example.answer, s.example.choices)) for s, _ in usable]
        codes = [render_codes(scheme, {name: lv[j] for name, lv in levels.items()}) for j in range(len(usable))]
        rows = [Example(s.example.id, s.example.question, s.answer, s.example.choices, s.rationale) for s, _ in usable]
        items, _ = build_items(rows, student.tokenizer, student.template, "iro", max_length=config.max_length, codes=codes)
        round_config = replace(config, out=str(out / f"round-{round_no}"))
        if packed and config.beta > 0 and config.reference_top_k > 0:
            # the pool is fixed for the round and the reference frozen: its distribution once, not every step
            cached[0] = compute_reference(reference, items, config.reference_top_k, config.batch_size, device,
                                          autocast)
        accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum,
                                  mixed_precision="bf16" if precision == "bf16" else "no",
                                  cpu=config.device == "cpu")
        run_training(accelerator, student, items, round_config, Path(round_config.out), resume, progress, None,
                     extra_loss=kl_entropy, label=f"mario round {round_no}")
        offset = (round_no - 1) * config.steps_per_round
        for line in (Path(round_config.out) / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            _log(log, {**row, "step": row["step"] + offset, "round": round_no})
        from peft import get_peft_model_state_dict
        from safetensors.torch import save

        from rationalizer.atomic import atomic_write_bytes

        atomic_write_bytes(out / f"round-{round_no}" / "adapter.safetensors", save(
            {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(student.model).items()}))
        atomic_write_text(out / "pool.jsonl", "".join(json.dumps({"example": asdict(s.example), "rationale": s.rationale,
                                                                  "answer": s.answer, "source": s.source}) + "\n" for s in pool))
        atomic_write_text(progress_file, json.dumps({"rounds": round_no}))
    write_bundle(out, student.model, student.tokenizer, name=out.name, base=student.base, template=student.template,
                 control=scheme, provenance={"trainer": "mario", "sft": config.sft, "rewards": config.rewards,
                                             "rounds": config.rounds, "pool": len(pool), "beta": config.beta,
                                             "gamma": config.gamma},
                 max_new_tokens=config.max_new_tokens)
    plot_metrics(log, out / "metrics.png")
    return out
