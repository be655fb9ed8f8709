"""rationalizer: small language models that answer a question and explain why.

    >>> from rationalizer import Rationalizer
    >>> r = Rationalizer.load()                      # the embedded default model
    >>> out = r.rationalize("Can a penguin fly?", choices=["yes", "no"])
    >>> out.answer, out.rationale

Importing this package is light: no torch, no transformers, no llama.cpp until
a model is loaded.
"""

from __future__ import annotations

from .bundle import Bundle
from .errors import BackendError, BundleError, InputError, ModelFileError, RationalizerError, UserError
from .manifest import ControlScheme, Manifest, ParserSettings, PromptTemplate, RewardLevels, WeightFile
from .prompt_text import Prompt
from .prompting import build_prompt, format_target, parse_answer
from .rationale import Rationale
from .runtime import Rationalizer

__version__ = "0.1.0"

__all__ = [
    "Rationalizer",
    "Rationale",
    "Bundle",
    "Manifest",
    "PromptTemplate",
    "ControlScheme",
    "RewardLevels",
    "ParserSettings",
    "WeightFile",
    "Prompt",
    "build_prompt",
    "parse_answer",
    "format_target",
    "RationalizerError",
    "UserError",
    "InputError",
    "BundleError",
    "ModelFileError",
    "BackendError",
]
