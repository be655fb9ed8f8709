"""A tokenizer.json that onnxruntime-genai and the ``tokenizers`` library read the same way.

transformers' GGUF conversion (how the default base's checkpoint is rebuilt) writes
a byte-level BPE with ``byte_fallback`` on and a SentencePiece-style decoder chain
(ByteFallback, Fuse, Replace "▁", ByteLevel). ``tokenizers`` never reaches the
fallback usefully (the vocabulary has no ``<0xNN>`` byte tokens to fall back to); but
onnxruntime-genai takes ``byte_fallback`` as the mark of a SentencePiece model and
splits the text into byte tokens (measured on the default base: 117 ids, some -1,
for a 49-token prompt). Writing the plain byte-level form, which is what the
model was trained with, gives the same ids in both runtimes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rationalizer.atomic import atomic_write_text


_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _has_byte_level(node: Any) -> dict | None:
    """The ByteLevel component of a pre-tokenizer or decoder (plain or inside a Sequence), if any."""
    if not isinstance(node, dict):
        return None
    if node.get("type") == "ByteLevel":
        return node
    for child in node.get("pretokenizers") or node.get("decoders") or []:
        found = _has_byte_level(child)
        if found:
            return found
    return None


def canonical_byte_level(data: dict) -> bool:
    """Rewrite a byte-level BPE tokenizer (``tokenizer.json`` as parsed) without byte fallback and with a
    plain ByteLevel decoder, in place; True when anything changed.

    Only when the rewrite cannot change what ``tokenizers`` makes of any text: the model is BPE, the
    pre-tokenizer byte-level, and the vocabulary holds no ``<0xNN>`` byte token. ``tokenizers``' byte
    fallback maps a symbol missing from the vocabulary to those tokens, or, when any of them is
    missing, to the unknown token, which is what it does without the fallback. (The default base
    lacks 21 of the 256 byte symbols, bytes such as 0x04 or 0xFF that text hardly ever holds.)
    """
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not _has_byte_level(data.get("pre_tokenizer")):
        return False
    if any(_BYTE_TOKEN.fullmatch(token) for token in model.get("vocab") or {}):
        return False
    changed = bool(model.get("byte_fallback"))
    model["byte_fallback"] = False
    decoder = data.get("decoder")
    byte_level = _has_byte_level(decoder)
    if decoder is not None and decoder is not byte_level:
        data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True,
                           **{k: v for k, v in (byte_level or {}).items() if k != "type"}}
        changed = True
    return changed


def write_canonical_tokenizer(path: Path) -> bool:
    """Rewrite ``path`` (a tokenizer.json) with :func:`canonical_byte_level`; True when it changed."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not canonical_byte_level(data):
        return False
    atomic_write_text(path, json.dumps(data, ensure_ascii=False))
    return True


def genai_token_ids(folder: Path, prompts: list[str]) -> list[list[int]] | None:
    """The ids onnxruntime-genai's own tokenizer gives ``prompts`` for the bundle in ``folder``; None
    when onnxruntime-genai is not installed."""
    try:
        import onnxruntime_genai as og
    except ImportError:
        return None
    config = og.Config(str(folder))
    config.clear_providers()  # genai-fp16's config names CUDA, which a CPU-only onnxruntime-genai cannot load
    tokenizer = og.Tokenizer(og.Model(config))
    return [[int(i) for i in tokenizer.encode(p)] for p in prompts]
