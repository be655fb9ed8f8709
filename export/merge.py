"""Merging a LoRA adapter into its base weights, checked against the unmerged model."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rationalizer import base_model
from rationalizer.errors import UserError

CHECK_TEXTS = (
    "<|im_start|>user\nCan a penguin fly?<|im_end|>\n<|im_start|>assistant\n",
    "Where is milk kept cold? Choices: fridge, oven, shelf",
)
# Both sides of the check run the same base, so only the merge itself is under test; its float rounding
# grows with the adapter's size (0.0019 on the default student, logits around 20), while a merge that
# drops or mis-scales a layer moves logits by whole units.
MAX_LOGIT_DIFF = 1e-2


@dataclass
class MergeCheck:
    """How far the merged model's logits are from the adapter applied on the fly."""

    max_abs_logit_diff: float
    top1_agreement: float


def _logits(model, tokenizer, texts: tuple[str, ...]):
    import torch

    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt")).logits[0].float() for t in texts]


def merge_adapter(base_dir: Path, adapter_dir: Path, out: Path, texts: tuple[str, ...] = CHECK_TEXTS) -> MergeCheck:
    """Write ``base + adapter`` as one fp32 safetensors checkpoint in ``out`` and check it.

    The check runs both models on ``texts`` and fails when any logit moves by more
    than ``MAX_LOGIT_DIFF``: merging is exact up to float rounding, so a larger gap
    means the merged weights do not reproduce the adapter (a layer peft could not fold in).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise UserError(f"{adapter_dir}: no adapter_model.safetensors (pickle adapter weights are refused)")
    tokenizer = AutoTokenizer.from_pretrained(base_model.tokenizer_folder(adapter_dir, base_dir), local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True, dtype=torch.float32,
                                                local_files_only=True)
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False, local_files_only=True).eval()
    before = _logits(model, tokenizer, texts)
    merged = model.merge_and_unload(safe_merge=True).eval()
    after = _logits(merged, tokenizer, texts)
    diff = max(float((a - b).abs().max()) for a, b in zip(before, after))
    agree = sum(int(torch.equal(a.argmax(-1), b.argmax(-1))) for a, b in zip(before, after)) / len(texts)
    check = MergeCheck(diff, agree)
    if diff > MAX_LOGIT_DIFF:
        raise UserError(f"merging {adapter_dir} into {base_dir} moved logits by {diff:.3g} (> {MAX_LOGIT_DIFF}); "
                        "the merged weights do not reproduce the adapter applied on the fly")
    if out.exists():
        shutil.rmtree(out)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return check
