"""A LoRA adapter over the tiny model, written as a PEFT bundle by the trainer's own bundle writer."""

from __future__ import annotations

from pathlib import Path


def build_tiny_qwen2(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A tiny random Qwen2 (q/k/v biases, no Q/K reordering in GGUF) sharing the tiny tokenizer."""
    import shutil

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(tokenizer_dir / name, folder / name)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, eos_token_id=2, bos_token_id=0)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:  # random init leaves biases at zero; make them matter
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_peft_bundle(out: Path, base_dir: Path, seed: int = 1, base_name: str | None = None,
                      merge: bool = False) -> Path:
    """A PEFT bundle whose adapter (random A and B, so it changes the output) sits on ``base_dir``;
    ``base_name`` is what the manifest calls the base (``default`` for the embedded model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rationalizer.manifest import ControlScheme, PromptTemplate, RewardLevels
    from rationalizer.training.bundle_out import write_bundle

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    control = ControlScheme(rewards=[RewardLevels("consistency", 3)], default={"consistency": 3})
    write_bundle(out, peft_model, tokenizer, "tiny-lora", base_name or str(base_dir), PromptTemplate(), control=control,
                 max_new_tokens=16, merge=merge)
    return out


def build_tiny_sentencepiece_llama(folder: Path, seed: int = 0) -> Path:
    """A tiny random Llama with a SentencePiece-style tokenizer (TinyLlama/Llama 2 layout: ``▁`` for
    spaces, byte-fallback tokens <0x00>..<0xFF>, BOS added), trained here on the tiny corpus."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from helpers.tiny_model import CORPUS

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                            show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder
