"""The prompt's trust boundary: control tokens only where the template put them.

A chat template marks turns with control tokens (``<|im_start|>``, ``<|im_end|>``).
Had a backend parsed control tokens anywhere in the rendered text, a question
containing ``<|im_end|>\\n<|im_start|>assistant\\n`` would forge a turn. So the
template's own text is the only place a control token may come from: a question,
its choices, a rationale, a judge's input, or any other text a user or a model
supplies is tokenized as plain text, on every backend, in the trainer's data and
in every judge.

:class:`Prompt` is a ``str`` that remembers which of its parts the template wrote.
Everything else is untrusted, including text made from a prompt by ordinary
string operations (slicing, ``format``): a prompt that loses its structure fails
safe, with no control tokens at all. Concatenation keeps the structure, so
``prompt + rationale`` is still a prompt whose rationale part is untrusted.

:class:`PromptEncoder` turns such text into token ids for one tokenizer. It never
splits plain text where the template's parts meet the user's: everything between
two control tokens is tokenized as one piece, so an ordinary prompt gets exactly
the ids that tokenizing the whole text with special-token parsing gave before.
Each runtime's tokenizer supplies two things: plain tokenization (no control
tokens parsed) and its control tokens; ``*_encoder`` below build it for
llama.cpp, Hugging Face ``tokenizers`` and transformers tokenizers without
importing any of them.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, Sequence

Part = tuple[str, bool]
"""A piece of prompt text and whether the template wrote it (True) or it came from outside (False)."""


class Prompt(str):
    """Model input text whose template-written parts are known; see the module docstring."""

    parts: tuple[Part, ...]

    def __new__(cls, parts: Iterable[Part]) -> "Prompt":
        merged: list[Part] = []
        for text, trusted in parts:
            if not text:
                continue
            if merged and merged[-1][1] == bool(trusted):
                merged[-1] = (merged[-1][0] + text, merged[-1][1])
            else:
                merged.append((str(text), bool(trusted)))
        obj = super().__new__(cls, "".join(text for text, _ in merged))
        obj.parts = tuple(merged)
        return obj

    @classmethod
    def template(cls, text: str) -> "Prompt":
        """Text the template (or the manifest's system prompt) wrote: control tokens in it are real."""
        return cls([(text, True)])

    def head(self, n: int) -> "Prompt":
        """The first ``n`` characters, parts kept."""
        out: list[Part] = []
        for text, trusted in self.parts:
            if n <= 0:
                break
            out.append((text[:n], trusted))
            n -= len(text)
        return Prompt(out)

    def __add__(self, other: object) -> "Prompt":
        if not isinstance(other, str):
            return NotImplemented
        return Prompt(self.parts + parts_of(other))

    def __radd__(self, other: object) -> "Prompt":
        # Python tries this before str.__add__ because Prompt subclasses str.
        if not isinstance(other, str):
            return NotImplemented
        return Prompt(parts_of(other) + self.parts)

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickling (worker processes) keeps the parts
        return (self.parts,)

    def __repr__(self) -> str:
        return f"Prompt({str.__repr__(self)})"


def parts_of(text: str) -> tuple[Part, ...]:
    """The parts of ``text``: a :class:`Prompt`'s own, or one untrusted part for any other string."""
    if isinstance(text, Prompt):
        return text.parts
    return ((str(text), False),) if text else ()


class PromptEncoder:
    """Token ids of prompt text for one tokenizer, control tokens only from trusted parts.

    ``plain(text)`` tokenizes without parsing control tokens and without adding
    BOS/EOS; ``control`` maps each control token's text to its id; ``prefix`` and
    ``suffix`` are what the tokenizer adds around a whole input (BOS, say).
    """

    def __init__(self, plain: Callable[[str], list[int]], control: Mapping[str, int],
                 prefix: Sequence[int] = (), suffix: Sequence[int] = ()) -> None:
        self._plain = plain
        self.control = dict(control)
        self.prefix, self.suffix = list(prefix), list(suffix)
        names = sorted(self.control, key=len, reverse=True)  # longest first: "<|im_end|>" before "<|im"
        self._pattern = re.compile("|".join(re.escape(n) for n in names)) if names else None

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        """Token ids of ``text``; with ``add_special`` the tokenizer's prefix and suffix (BOS) around them."""
        ids = list(self.prefix) if add_special else []
        pending: list[str] = []
        for chunk, trusted in parts_of(text):
            if not trusted or self._pattern is None:
                pending.append(chunk)
                continue
            start = 0
            for hit in self._pattern.finditer(chunk):
                pending.append(chunk[start:hit.start()])
                ids += self._flush(pending)
                ids.append(self.control[hit.group()])
                start = hit.end()
            pending.append(chunk[start:])
        ids += self._flush(pending)
        return ids + self.suffix if add_special else ids

    def _flush(self, pending: list[str]) -> list[int]:
        text = "".join(pending)
        pending.clear()
        return self._plain(text) if text else []

    def control_ids(self) -> set[int]:
        """The ids only a template may produce."""
        return set(self.control.values())


def _around(with_special: list[int], plain: list[int]) -> tuple[list[int], list[int]]:
    """(prefix, suffix) a tokenizer adds around ``plain`` when asked for its special tokens."""
    n = len(plain)
    for i in range(len(with_special) - n + 1):
        if with_special[i:i + n] == plain:
            return with_special[:i], with_special[i + n:]
    return [], []


def tokenizers_encoder(tokenizer: Any) -> PromptEncoder:
    """An encoder over a Hugging Face ``tokenizers.Tokenizer`` (the ONNX backend's)."""
    plain_tokenizer = type(tokenizer).from_str(tokenizer.to_str())
    plain_tokenizer.encode_special_tokens = True  # special added tokens in text are split as ordinary text

    def plain(text: str) -> list[int]:
        return plain_tokenizer.encode(text, add_special_tokens=False).ids

    control = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    prefix, suffix = _around(tokenizer.encode("a", add_special_tokens=True).ids, plain("a"))
    return PromptEncoder(plain, control, prefix, suffix)


def transformers_encoder(tokenizer: Any) -> PromptEncoder:
    """An encoder over a transformers tokenizer (the torch backend, the trainer, torch judges)."""

    def plain(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids

    control = {t.content: i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    prefix, suffix = _around(tokenizer("a").input_ids, plain("a"))
    return PromptEncoder(plain, control, prefix, suffix)


def llama_encoder(llm: Any) -> PromptEncoder:
    """An encoder over a ``llama_cpp.Llama`` model: its control tokens are the vocabulary's CONTROL type."""
    import llama_cpp

    def plain(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False)

    vocab = llm._model.vocab
    control: dict[str, int] = {}
    for token in range(llm.n_vocab()):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            text = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
            if text:
                control.setdefault(text, token)
    prefix, suffix = _around(llm.tokenize(b"a", add_bos=True, special=False), plain("a"))
    return PromptEncoder(plain, control, prefix, suffix)
