"""Multi-reward training (MaRio, on Quark's loop) over an SFT student.

The pool starts with every teacher rationale of the training questions. Each round
samples ``k`` rationales for every question from the current policy, adds them
to the pool, scores the pool with every reward, and trains on
``question -> codes + rationale + answer`` with
``NLL + β·KL(policy || reference) - γ·entropy``. A code's level is the entry's
bin among rationales of the same data source; the bins are cut once, in the
first round, so a level means the same thing in every round (:mod:`.binning`).
The codes sit in the prompt (by default right before the rationale), so they
carry no loss. The bundle records the scheme (rewards, bin edges, code text and
placement, best levels) that ``Rationalizer.rationalize(quality=...)`` offers.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from rationalizer import Bundle, base_model
from rationalizer.atomic import atomic_write_text
from rationalizer.config_file import save_config
from rationalizer.dataclass_json import from_dict, to_dict
from rationalizer.dataset import Example
from rationalizer.manifest import ControlScheme, ParserSettings
from rationalizer.progress import Progress, or_silent
from rationalizer.prompting import CodePlacement, parse_answer, render_codes

from .batches import left_padded
from .binning import Cut, cut_reward, cuts_of, scheme_of
from .packing import target_logits
from .precision import autocast_factory, choose_precision
from .reference import ReferenceTopK, compute_reference, topk_kl
from .config import MarioConfig
from .items import IGNORE, build_items
from .mario_pool import load_pool, pool_rows, questions_of, save_pool, teacher_samples
from .rewards import Reward, Sample, build_rewards
from .sft import Student

logger = logging.getLogger(__name__)

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
    for adapter_config in policy.peft_config.values():
        # the base it was trained over as this machine has it: a hub id there (the shipped default's) makes
        # peft look the base up on the hub at every checkpoint, and retry for half a minute offline
        adapter_config.base_model_name_or_path = str(base)
    return Student(policy, tokenizer, bundle.manifest.prompt, bundle.manifest.base_model), reference


def sample_policy(student: Student, examples: list[Example], codes: str, placement: CodePlacement, k: int,
                  config: MarioConfig, seed: int, progress: Progress | None = None) -> list[Sample]:
    """``k`` sampled rationales per question from the policy, batched, with the answer each leads to
    (``progress`` counts the questions)."""
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
    counter = or_silent(progress)
    counter.start(len(examples), f"sampling {k} per question")
    model.eval()
    for start in range(0, len(examples), config.batch_size):
        batch = examples[start : start + config.batch_size]
        input_ids, attention_mask = left_padded(
            [encoder.encode(build_prompt(student.template, e.question, e.choices, codes, placement)) for e in batch],
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
        counter.update(len(batch))
    model.train()
    return samples


def score_pool(pool: list[Sample], rewards: list[Reward], cache: dict[int, dict[str, float]]) -> None:
    """Score entries not scored yet (rewards are deterministic, so old scores stay valid)."""
    todo = [i for i in range(len(pool)) if i not in cache]
    for reward in rewards:
        values = reward.score([pool[i] for i in todo])
        for i, v in zip(todo, values):
            cache.setdefault(i, {})[reward.name] = float(v)


def usable(sample: Sample) -> bool:
    """An entry that can be trained on: a rationale that ends with an answer."""
    return sample.answer is not None and bool(sample.rationale.strip())


def cut_pool(rewards: list[Reward], pool: list[Sample], cache: dict[int, dict[str, float]], bins: int) -> dict[str, Cut]:
    """Each reward's edges over the usable entries, within each data source."""
    kept = [i for i, s in enumerate(pool) if usable(s)]
    sources = [pool[i].example.source for i in kept]
    return {r.name: cut_reward(r.name, [cache[i][r.name] for i in kept], sources, bins) for r in rewards}


def reward_metrics(rewards: list[Reward], length_target: int | None) -> dict[str, tuple[str, int] | None]:
    """The eval metric each reward's code should move (none for a length reward with a target)."""
    from rationalizer.evaluation.code_effect import REWARD_METRICS

    return {r.name: None if r.name == "length" and length_target else REWARD_METRICS.get(r.name) for r in rewards}


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
    # the device without an Accelerator: accelerate's process-wide state takes the mixed precision of the
    # first one built, so a probe without it would refuse the bf16 one each round builds
    device = torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    precision, why = choose_precision(config.precision, device.type)
    logger.info("precision: %s (%s)", precision, why)
    autocast = autocast_factory(precision, device.type)
    packed = config.packing
    cached: list[ReferenceTopK | None] = [None]  # this round's reference distribution
    student.model.to(device)  # sampling runs before the first prepare(); the reference never goes through it
    reference.to(device)
    rewards = build_rewards(config.rewards, config.judge, config.length_target)
    metrics = reward_metrics(rewards, config.length_target)
    rows = pool_rows(config)
    questions = questions_of(rows)
    random.Random(config.seed).shuffle(questions)  # a round's batches mix every training file
    pool = teacher_samples(rows)
    cache: dict[int, dict[str, float]] = {}
    log = out / "metrics.jsonl"
    progress_file = out / "rounds.json"
    state = json.loads(progress_file.read_text()) if resume and progress_file.exists() else {"rounds": 0}
    done_rounds = state["rounds"]
    cuts: dict[str, Cut] | None = None
    scheme = ControlScheme()
    if done_rounds:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(student.model, load_file(str(out / f"round-{done_rounds}" / "adapter.safetensors")))
        pool = load_pool(out / "pool.jsonl")
        # the levels keep the meaning the finished rounds gave them
        scheme = from_dict(ControlScheme, state["control"], where="rounds.json control")
        cuts = cuts_of(scheme)
        rewind_log(log, lambda row: row.get("round", 0) <= done_rounds)  # rows of the round that was cut off
        logger.info("resumed after round %d", done_rounds)
    elif log.exists():
        log.unlink()

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
        asked = questions
        if config.questions_per_round and config.questions_per_round < len(questions):
            # each round asks the next questions, wrapping around, so rounds see different ones
            first = (round_no - 1) * config.questions_per_round
            asked = [questions[(first + i) % len(questions)] for i in range(config.questions_per_round)]
        best_codes = render_codes(scheme, scheme.default) if scheme.rewards else ""
        if config.samples_per_question:
            logger.info("round %d: sampling %d rationales for each of %d questions", round_no,
                        config.samples_per_question, len(asked))
        fresh = sample_policy(student, asked, best_codes, scheme.placement, config.samples_per_question, config,
                              config.seed + round_no, progress) if config.samples_per_question else []
        pool.extend(fresh)
        logger.info("round %d: scoring %d new pool entries", round_no, len(pool) - len(cache))
        score_pool(pool, rewards, cache)
        new_scores = [cache[i] for i in range(len(pool) - len(fresh), len(pool))]
        means = {r.name: sum(s[r.name] for s in new_scores) / max(len(new_scores), 1) for r in rewards}
        _log(log, {"kind": "round", "round": round_no, "rewards": means, "pool": len(pool)})
        logger.info("round %d: policy reward means %s", round_no, ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
        if cuts is None:  # cut once, over the teacher's rationales and the first samples
            cuts = cut_pool(rewards, pool, cache, config.bins)
            scheme = scheme_of(cuts, config.code_placement, metrics, config.code_words)
        kept = [i for i, s in enumerate(pool) if usable(s)]
        codes = [render_codes(scheme, {name: cut.level(cache[i][name], pool[i].example.source)
                                       for name, cut in cuts.items()}) for i in kept]
        train_rows = [Example(pool[i].example.id, pool[i].example.question, pool[i].answer, pool[i].example.choices,
                              pool[i].rationale) for i in kept]
        items, _ = build_items(train_rows, student.tokenizer, student.template, "iro", max_length=config.max_length,
                               codes=codes, placement=scheme.placement)
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
        save_pool(out / "pool.jsonl", pool)
        atomic_write_text(progress_file, json.dumps({"rounds": round_no, "control": to_dict(scheme)}))
    write_bundle(out, student.model, student.tokenizer, name=out.name, base=student.base, template=student.template,
                 control=scheme, provenance={"trainer": "mario", "sft": config.sft, "rewards": config.rewards,
                                             "rounds": config.rounds, "pool": len(pool),
                                             "questions": len(questions), "beta": config.beta,
                                             "gamma": config.gamma, "code_placement": config.code_placement},
                 max_new_tokens=config.max_new_tokens)
    plot_metrics(log, out / "metrics.png")
    return out
