"""HF checkpoints (Llama, Qwen2) and PEFT LoRA adapters to GGUF, with gguf-py's writer and name map.

Only what gguf-py does not provide is written here: reading the HF config into
GGUF hyperparameters, and the Q/K row order. HF Llama checkpoints store the
rotary halves of each head split ([x0..x63, x64..x127]); llama.cpp's Llama graph
expects them interleaved, so ``q_proj`` and ``k_proj`` rows (and a LoRA ``B``
on them) are reordered per head. Qwen2's graph takes the HF order as it is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from rationalizer.errors import UserError

from .formats import FLOAT_TYPES, LORA_DTYPES, LoraDtype
from .gguf_vocab import detect_pre_tokenizer, read_vocab

logger = logging.getLogger(__name__)

ARCHITECTURES = {"LlamaForCausalLM": "LLAMA", "Qwen2ForCausalLM": "QWEN2"}


@dataclass
class ModelShape:
    """The hyperparameters that tensor conversion needs."""

    arch: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    tied: bool


def read_config(hf_dir: Path) -> dict:
    """``config.json`` of an HF checkpoint, refusing architectures this exporter does not know."""
    try:
        config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{hf_dir}: no config.json; not an HF checkpoint") from None
    archs = config.get("architectures") or []
    if not archs or archs[0] not in ARCHITECTURES:
        raise UserError(f"{hf_dir}: architecture {archs[:1]} is not supported for GGUF export "
                        f"(supported: {', '.join(ARCHITECTURES)})")
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in (None, "default", "linear"):
        raise UserError(f"{hf_dir}: rope scaling {kind!r} is not supported for GGUF export (only none or linear)")
    return config


def shape_of(config: dict) -> ModelShape:
    """The :class:`ModelShape` of a config read by :func:`read_config`."""
    heads = config["num_attention_heads"]
    return ModelShape(ARCHITECTURES[config["architectures"][0]], config["num_hidden_layers"], heads,
                      config.get("num_key_value_heads") or heads, bool(config.get("tie_word_embeddings", False)))


def _hparams(writer, config: dict, name: str, file_type: int) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    writer.add_file_type(file_type)


def unpermute_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's split-halves rotary row order to llama.cpp's interleaved order, per head."""
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _tensors(hf_dir: Path):
    """(name, float32 array) of every tensor in the checkpoint's safetensors files."""
    from safetensors import safe_open

    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"{hf_dir}: no .safetensors weights (pickle checkpoints are not read)")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                yield key, f.get_tensor(key).float().numpy()


def _encode(data: np.ndarray, out_type: str):
    """(array, raw ggml type or None) for one tensor; 1-D tensors (norms, biases) stay f32 as llama.cpp wants."""
    import gguf

    if data.ndim <= 1 or out_type == "f32":
        return data.astype(np.float32), None
    if out_type == "f16":
        return data.astype(np.float16), None
    return gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16), gguf.GGMLQuantizationType.BF16


def write_model_gguf(hf_dir: Path, out: Path, out_type: str = "f32", name: str = "model") -> Path:
    """Convert the HF checkpoint in ``hf_dir`` to one GGUF file of ``out_type`` (f32, f16 or bf16)."""
    import gguf

    if out_type not in FLOAT_TYPES:
        raise UserError(f"GGUF float type must be one of {', '.join(FLOAT_TYPES)}, not {out_type!r}")
    config = read_config(hf_dir)
    shape = shape_of(config)
    arch = gguf.MODEL_ARCH[shape.arch]
    arch_name = gguf.MODEL_ARCH_NAMES[arch]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16}[out_type]
    vocab = read_vocab(hf_dir, config["vocab_size"])

    def metadata(writer) -> None:
        _hparams(writer, config, name, int(file_type))

    vocab.pre = detect_pre_tokenizer(hf_dir, vocab, metadata, arch_name)
    logger.info("tokenizer: %s, pre-tokenizer %r, %d tokens", vocab.model, vocab.pre, len(vocab.tokens))
    names = gguf.TensorNameMap(arch, shape.n_layers)
    writer = gguf.GGUFWriter(out, arch_name)
    metadata(writer)
    vocab.add_to(writer)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, data in _tensors(hf_dir):
        if key.endswith("rotary_emb.inv_freq"):
            continue
        if key == "lm_head.weight" and shape.tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise UserError(f"{hf_dir}: tensor {key!r} has no GGUF name for {arch_name}")
        if shape.arch == "LLAMA" and key.endswith("q_proj.weight"):
            data = unpermute_rows(data, shape.n_heads)
        elif shape.arch == "LLAMA" and key.endswith("k_proj.weight"):
            data = unpermute_rows(data, shape.n_kv_heads)
        array, raw = _encode(data, out_type)
        writer.add_tensor(target, array, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def write_lora_gguf(adapter_dir: Path, base_config_dir: Path, out: Path, name: str = "adapter",
                    dtype: LoraDtype = "f32") -> Path:
    """Convert a PEFT LoRA adapter to a GGUF LoRA adapter that llama.cpp applies over the base GGUF;
    ``dtype`` 'f16' halves the file (the A/B matrices are small and well inside f16's range)."""
    import gguf

    if dtype not in LORA_DTYPES:
        raise UserError(f"LoRA adapter dtype {dtype!r}: use {' or '.join(LORA_DTYPES)}")

    try:
        settings = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{adapter_dir}: no adapter_config.json; not a PEFT adapter") from None
    if settings.get("peft_type") != "LORA":
        raise UserError(f"{adapter_dir}: adapter type {settings.get('peft_type')!r} is not LoRA")
    if settings.get("modules_to_save"):
        raise UserError(f"{adapter_dir}: adapters that also train full modules ({settings['modules_to_save']}) "
                        "cannot be a GGUF LoRA adapter; export the merged model instead")
    shape = shape_of(read_config(base_config_dir))
    arch = gguf.MODEL_ARCH[shape.arch]
    rank = int(settings["r"])
    alpha = float(settings["lora_alpha"])
    if settings.get("use_rslora"):
        alpha *= rank ** 0.5  # llama.cpp scales by alpha / r; rsLoRA by alpha / sqrt(r)
    names = gguf.TensorNameMap(arch, shape.n_layers)
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(name)
    count = 0
    for key, data in _tensors(adapter_dir):
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker not in key:
                continue
            module = key.split(marker)[0].removeprefix("base_model.model.")
            target = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if target is None:
                raise UserError(f"{adapter_dir}: LoRA on {module!r} has no GGUF name")
            if part == "lora_B" and shape.arch == "LLAMA" and module.endswith("q_proj"):
                data = unpermute_rows(data, shape.n_heads)
            elif part == "lora_B" and shape.arch == "LLAMA" and module.endswith("k_proj"):
                data = unpermute_rows(data, shape.n_kv_heads)
            writer.add_tensor(f"{target}.{part.lower()}", data.astype(np.float16 if dtype == "f16" else np.float32))
            count += 1
            break
        else:
            raise UserError(f"{adapter_dir}: tensor {key!r} is not a LoRA A/B matrix")
    if not count:
        raise UserError(f"{adapter_dir}: the adapter holds no LoRA tensors")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
