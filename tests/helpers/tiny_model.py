"""A tiny randomly initialized Llama model with a BPE tokenizer trained here, saved as an HF bundle.

Nothing is downloaded: the tokenizer is trained on a few sentences and the
weights are random (seeded), so tests run in seconds and the numbers repeat.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CORPUS = [
    "Can a penguin fly? Penguins are birds that swim. So the answer is no.",
    "Is the sun a star? The sun is a star at the centre of our system. So the answer is yes.",
    "Where is milk kept cold? Milk spoils when warm, so it is kept in a fridge. So the answer is fridge.",
    "Choices: yes, no, fridge, oven, shelf. Question answer explanation true relevant reply Yes No.",
    "You are a helpful assistant. Explain your reasoning then end with So the answer is.",
    "0 1 2 3 4 5 6 7 8 9 10 18 apples eggs dollars",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_hf(folder: Path, seed: int = 0) -> Path:
    """Write config, safetensors weights and tokenizer of a tiny Llama into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                     unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf_tok.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_hf_bundle(bundle: Path, **manifest_fields) -> Path:
    """A bundle folder whose ``hf/`` holds the tiny model, with a manifest listing every file."""
    hf = build_tiny_hf(bundle / "hf")
    files = []
    for path in sorted(hf.iterdir()):
        data = path.read_bytes()
        role = "model" if path.name == "model.safetensors" else "config"
        files.append({"path": f"hf/{path.name}", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "role": role})
    files.sort(key=lambda f: f["role"] != "model")
    manifest = {"name": "tiny", "base_model": "random tiny llama", "files": {"hf": files},
                "generation": {"max_new_tokens": 24, "context_length": 512, "max_question_chars": 4000},
                "parser": {"strategies": ["marker", "leading", "mention"]}, **manifest_fields}
    (bundle / "rationalizer.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle
