"""The tokenizer part of a GGUF file: tokens, their types, merges, special ids, pre-tokenizer, chat template.

gguf-py supplies ``SpecialVocab`` (merges, special ids, add-BOS/EOS flags, chat
template). Token lists are built here: for GPT-2-style BPE because ``BpeVocab``
marks special tokens that sit inside the base vocabulary (SmolLM2's
``<|im_start|>`` is id 1) as normal text, so llama.cpp would never parse them as
one token; for SentencePiece-style BPE because ``LlamaHfVocab`` gives no real
scores (see :func:`_sentencepiece_vocab`).

llama.cpp splits text before BPE with a pre-tokenizer it knows by name. Rather
than recognizing tokenizers by a table of hashes, :func:`detect_pre_tokenizer`
writes a tokenizer-only GGUF for each candidate name, tokenizes probe texts with
llama.cpp and keeps the first name whose ids equal the HF tokenizer's.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rationalizer.errors import UserError
from rationalizer.manifest import ANSWER_MARKER

# Names llama.cpp accepts for ``tokenizer.ggml.pre``, most specific first.
PRE_TOKENIZER_CANDIDATES = ("smollm", "llama-bpe", "qwen2", "gpt-2", "starcoder", "olmo", "default")
PROBE_TEXTS = (
    "Hello world! It's 2024, and 12345 apples cost $3.50.\n\n  Indented   spaces\ttab",
    "<|im_start|>user\nCan a penguin fly?<|im_end|>\n<|im_start|>assistant\nNo, they can't.",
    "Ünïcödé — 東京 🙂 don't won't I'M we'll   \n\n\n x",
    f"{ANSWER_MARKER} yes. 3.14159 + 2718 = ? ((nested)) [brackets] {{braces}}",
)


@dataclass
class GgufVocab:
    """Everything the writer adds about the tokenizer."""

    model: str
    """llama.cpp's tokenizer model name: ``gpt2`` (byte-level BPE) or ``llama`` (SentencePiece-style)."""
    tokens: list[bytes]
    scores: list[float]
    types: list[int]
    special: Any
    """A ``gguf.SpecialVocab``: merges, special token ids, add-BOS/EOS flags, chat template."""
    pre: str = "default"
    add_space_prefix: bool = False
    """SentencePiece-style only: prepend a space (``▁``) to the input, as the HF normalizer does."""

    def add_to(self, writer) -> None:
        """Write the tokenizer keys into a ``GGUFWriter``."""
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.model == "llama":
            writer.add_add_space_prefix(self.add_space_prefix)
        self.special.add_to_gguf(writer, quiet=True)


def read_vocab(hf_dir: Path, n_vocab: int) -> GgufVocab:
    """Read the HF tokenizer in ``hf_dir`` and pad its token list to the model's ``n_vocab`` rows."""
    import gguf

    path = hf_dir / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{hf_dir}: no tokenizer.json (a fast tokenizer is needed to write GGUF)") from None
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise UserError(f"{path}: tokenizer type {model.get('type')!r} is not supported (BPE tokenizers only)")
    byte_level = _byte_level(data)
    if not byte_level and not model.get("byte_fallback"):
        raise UserError(f"{path}: neither byte-level BPE nor SentencePiece-style BPE with byte fallback; "
                        "llama.cpp could not read every input the way this tokenizer does")
    special = gguf.SpecialVocab(hf_dir, load_merges=byte_level, n_vocab=n_vocab)
    special.add_special_token["bos"] = _adds_bos(hf_dir)
    special.add_special_token.setdefault("eos", False)
    if not byte_level:
        result = _sentencepiece_vocab(data, special)
        return _pad(result, n_vocab, path)
    by_id: dict[int, tuple[str, int]] = {i: (t, int(gguf.TokenType.NORMAL)) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], int(kind))
    size = max(by_id) + 1
    tokens = [by_id[i][0].encode("utf-8") if i in by_id else f"[PAD{i}]".encode() for i in range(size)]
    types = [by_id[i][1] if i in by_id else int(gguf.TokenType.UNUSED) for i in range(size)]
    return _pad(GgufVocab("gpt2", tokens, [0.0] * size, types, special), n_vocab, path)


def _sentencepiece_vocab(data: dict, special) -> GgufVocab:
    """SentencePiece-style BPE (TinyLlama, Llama 2) as llama.cpp's ``llama`` tokenizer.

    llama.cpp merges the adjacent pair whose joined token scores highest, where HF
    applies merges by rank; giving each token minus its id as score makes the two
    agree because BPE trainers number merged tokens in merge order. (gguf-py's
    ``LlamaHfVocab`` writes one placeholder score for all, which changes the input.)
    The probe-text check after writing confirms the tokenizations match.
    """
    import gguf

    added = {a["id"]: a for a in data.get("added_tokens", [])}
    by_id = {i: t for t, i in data["model"]["vocab"].items()}
    for i, a in added.items():
        by_id[i] = a["content"]
    unk = data["model"].get("unk_token")
    tokens, scores, types = [], [], []
    for i in range(max(by_id) + 1):
        text = by_id.get(i, f"[PAD{i}]")
        if i not in by_id:
            kind = gguf.TokenType.UNUSED
        elif text == unk:
            kind = gguf.TokenType.UNKNOWN
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            kind = gguf.TokenType.BYTE
        elif i in added:
            kind = gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED
        else:
            kind = gguf.TokenType.NORMAL
        tokens.append(text.encode("utf-8"))
        scores.append(-float(i) if kind == gguf.TokenType.NORMAL else 0.0)
        types.append(int(kind))
    normalizers = (data.get("normalizer") or {}).get("normalizers") or [data.get("normalizer") or {}]
    prefix = any(n.get("type") == "Prepend" for n in normalizers)
    return GgufVocab("llama", tokens, scores, types, special, add_space_prefix=prefix)


def _pad(result: GgufVocab, n_vocab: int, path: Path) -> GgufVocab:
    """Check the token count against the model's embeddings and fill the rows past the tokenizer."""
    import gguf

    if len(result.tokens) > n_vocab:
        raise UserError(f"{path}: the tokenizer has {len(result.tokens)} tokens but the model only {n_vocab} embeddings")
    for i in range(len(result.tokens), n_vocab):  # embedding rows past the tokenizer (padding to a multiple)
        result.tokens.append(f"[PAD{i}]".encode())
        result.scores.append(-1000.0)
        result.types.append(int(gguf.TokenType.UNUSED))
    return result


def _byte_level(data: dict) -> bool:
    """True for GPT-2-style byte-level BPE (a ByteLevel pre-tokenizer, alone or in a sequence).

    Checked before ``byte_fallback``: transformers' GGUF loader writes SmolLM2's
    byte-level tokenizer with ``byte_fallback`` set.
    """
    pre = data.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return any(p.get("type") == "ByteLevel" for p in parts)


def _adds_bos(hf_dir: Path) -> bool:
    """Whether the HF tokenizer puts a BOS token in front of a plain text (llama.cpp must do the same)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    ids = tok("a").input_ids
    return tok.bos_token_id is not None and bool(ids) and ids[0] == tok.bos_token_id


def hf_token_ids(hf_dir: Path, texts: tuple[str, ...]) -> list[list[int]]:
    """The HF tokenizer's ids for each text (special tokens parsed, BOS as it adds it)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    return [tok(t).input_ids for t in texts]


def llama_cpp_token_ids(gguf_path: Path, texts: tuple[str, ...]) -> list[list[int]]:
    """llama.cpp's ids for each text, reading only the tokenizer of ``gguf_path``."""
    import llama_cpp

    from .quiet import native_output_silenced

    with native_output_silenced():  # a vocab-only load still logs context warnings
        llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in texts]
    finally:
        llm.close()


def detect_pre_tokenizer(hf_dir: Path, vocab: GgufVocab, write_metadata: Callable[[Any], None],
                         arch: str) -> str:
    """The first llama.cpp pre-tokenizer name whose tokenization of the probe texts equals HF's."""
    import gguf

    # llama.cpp's SentencePiece tokenizer takes no pre-tokenizer: only check that it reads like HF
    candidates = ("default",) if vocab.model == "llama" else PRE_TOKENIZER_CANDIDATES
    expected = hf_token_ids(hf_dir, PROBE_TEXTS)
    with tempfile.TemporaryDirectory(prefix="rationalizer-vocab-") as tmp:
        for name in candidates:
            vocab.pre = name
            path = Path(tmp) / f"{name}.gguf"
            writer = gguf.GGUFWriter(path, arch)
            write_metadata(writer)
            vocab.add_to(writer)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            try:
                if llama_cpp_token_ids(path, PROBE_TEXTS) == expected:
                    return name
            except (ValueError, RuntimeError):
                continue
    raise UserError(f"{hf_dir}: llama.cpp does not tokenize like this tokenizer (tried pre-tokenizers "
                    f"{', '.join(candidates)}); GGUF export would change the model's input")
