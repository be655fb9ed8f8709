"""What the training benchmarks share: the default base, StrategyQA training items and a LoRA student.

Every benchmark trains the same student (SmolLM2-135M-Instruct rebuilt from its GGUF, LoRA r=16 on
all linear layers of a block) on the same rows, so their figures compare.
"""

from __future__ import annotations

from typing import Any

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DATA = "../shared/data/strategyqa/train.jsonl"


def base_and_tokenizer() -> tuple[Any, Any]:
    """The default base checkpoint's folder and its tokenizer (built from the embedded GGUF once)."""
    from transformers import AutoTokenizer

    from rationalizer import base_model
    from rationalizer.training.base_student import resolve_or_build

    base = resolve_or_build(base_model.DEFAULT)
    return base, AutoTokenizer.from_pretrained(base, local_files_only=True)


def training_items(tokenizer, rows: int, data: str = DATA, codes: bool = False) -> list:
    """I-RO training items of the first ``rows`` factual rows; with ``codes``, MaRio-style control codes."""
    from rationalizer.training.items import build_items, template_for
    from rationalizer.training.sft import read_training_files

    examples = [e for e in read_training_files([data], rows) if e.kind == "factual"]
    texts = [f"<accuracy:{1 + i % 5}><diversity:{1 + (i * 3) % 5}> " for i in range(len(examples))] if codes else None
    return build_items(examples, tokenizer, template_for(tokenizer), max_length=320, codes=texts)[0]


def frozen(base):
    """The base model, fp32, for inference (MaRio's reference)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True).eval()


def lora_student(base):
    """The base model in fp32 with a fresh LoRA adapter (r=16, alpha 32, dropout 0.05)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True)
    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                            target_modules=TARGETS))
