"""The token ids that end a generation: the one rule for every backend, trainer and check.

A model's files can name its end-of-sequence token in three places (``config.json``,
``generation_config.json`` and the tokenizer), each as one id, a list of ids or
nothing, and they need not agree (SmolLM2's chat models end a turn with
``<|im_end|>`` and the text with ``<|endoftext|>``). Generation stops on any of
them, and on any of the template's stop strings that is one token of the
vocabulary (a stop string spanning several tokens is cut from the text instead,
by :class:`~rationalizer.backends.base.StopStringFilter`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable


def eos_ids(value: Any) -> set[int]:
    """The ids of one ``eos_token_id`` field: an int, a list of ints, or None (no ids)."""
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def stop_token_ids(eos_fields: Iterable[Any], stop_strings: Iterable[str] = (),
                   token_id: Callable[[str], int | None] | None = None) -> set[int]:
    """Every id in ``eos_fields`` (``eos_token_id`` values, see :func:`eos_ids`), and the id ``token_id``
    gives each stop string that is a single token (``token_id`` returns None for the others)."""
    ids: set[int] = set()
    for value in eos_fields:
        ids |= eos_ids(value)
    if token_id is not None:
        for text in stop_strings:
            token = token_id(text)
            if token is not None:
                ids.add(int(token))
    return ids


def hf_stop_token_ids(model: Any, tokenizer: Any, stop_strings: Iterable[str] = ()) -> set[int]:
    """:func:`stop_token_ids` of a transformers model and tokenizer: the EOS ids of the model's config, its
    generation config and the tokenizer, and the template's single-token stop strings."""
    generation = getattr(model, "generation_config", None)
    fields = [model.config.eos_token_id, getattr(generation, "eos_token_id", None), tokenizer.eos_token_id]
    stop_strings = list(stop_strings)
    vocab = tokenizer.get_vocab() if stop_strings else {}  # a fresh dict of the whole vocabulary: only when needed
    return stop_token_ids(fields, stop_strings, vocab.get)
