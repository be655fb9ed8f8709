"""Prompts, control codes and answer parsing: the one module the trainer and every backend share.

Output format (MaRio I-RO, SCOTT): the model writes its rationale, then the answer
marker (:data:`~rationalizer.manifest.ANSWER_MARKER` unless the manifest names another)
and the answer; the answer is read from the text after the marker. Control codes
are plain text made of ordinary tokens (``<plausibility:5>``), placed before the
question or at the start of the response (:attr:`ControlScheme.placement`).
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from .errors import BundleError, InputError
from .manifest import ANSWER_MARKER, ControlScheme, ParserSettings, PromptTemplate
from .prompt_text import Prompt, parts_of

Quality = str | Mapping[str, int] | None
CodePlacement = Literal["user", "response"]
MAX_CHOICES = 26
MAX_CHOICE_CHARS = 500
_LABELS = string.ascii_uppercase
_YES_NO = {"yes", "no", "true", "false"}


# ---------------------------------------------------------------- input checks


def clean_question(question: str, max_chars: int) -> str:
    """Strip and check a question: non-empty, at most ``max_chars``, no control characters.

    Control characters other than newline and tab are removed (they carry no
    meaning for the model and can break a terminal); a question longer than
    ``max_chars`` is refused rather than silently cut, because a cut question
    may ask something else.
    """
    if not isinstance(question, str):
        raise InputError(f"question must be text, got {type(question).__name__}")
    text = _strip_controls(question)
    if not _visible(text):
        raise InputError("the question is empty")
    if len(text) > max_chars:
        raise InputError(f"the question has {len(text)} characters; this model takes at most {max_chars}")
    return text


def _strip_controls(text: str) -> str:
    # Cc: control characters; Cs: lone surrogates, which no encoder can turn into bytes
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs")).strip()


def _visible(text: str) -> bool:
    """Whether text has anything but whitespace and invisible format characters (zero-width space, BOM...)."""
    return any(not c.isspace() and unicodedata.category(c) != "Cf" for c in text)


def clean_choices(choices: Sequence[str] | None) -> list[str] | None:
    """Strip and check answer choices: none empty, none repeated (ignoring case), at most 26."""
    if choices is None:
        return None
    if isinstance(choices, str):
        raise InputError("choices must be a list of strings, not one string")
    # a choice is a short label on the prompt's one choices line: line breaks inside it become spaces
    cleaned = [" ".join(_strip_controls(str(c)).split()) for c in choices]
    if any(not _visible(c) for c in cleaned):
        raise InputError("a choice is empty")
    if any(len(c) > MAX_CHOICE_CHARS for c in cleaned):
        raise InputError(f"a choice is longer than {MAX_CHOICE_CHARS} characters")
    if len(cleaned) < 2:
        raise InputError("give at least two choices, or none for a free-form answer")
    if len(cleaned) > MAX_CHOICES:
        raise InputError(f"{len(cleaned)} choices; at most {MAX_CHOICES} are supported")
    seen: set[str] = set()
    for c in cleaned:
        key = _normalize(c)
        if key in seen:
            raise InputError(f"choice {c!r} is given twice")
        seen.add(key)
    return cleaned


# ---------------------------------------------------------------- control codes


def resolve_quality(scheme: ControlScheme, quality: Quality) -> dict[str, int]:
    """Turn a quality request into a full selection ``{reward: level}`` for the scheme.

    ``quality`` is None or ``"best"`` (the scheme's default, else the top level of
    every reward), a preset name of the manifest, a mapping, or text such as
    ``"diversity=3,consistency=5"``. Rewards left out keep their default level; a code that is not
    offered (:attr:`RewardLevels.offered`) always has its default level and cannot be asked for.
    """
    levels = {r.name: r.levels for r in scheme.rewards}
    best = {name: scheme.default.get(name, top) for name, top in levels.items()}
    if quality is None or quality == "best":
        return best
    if isinstance(quality, str):
        if quality in scheme.presets:
            requested: Mapping[str, int] = scheme.presets[quality]
        elif "=" in quality:
            requested = _parse_quality_text(quality)
        else:
            presets = ", ".join(["best", *scheme.presets]) or "best"
            raise InputError(f"unknown quality preset {quality!r} (presets: {presets}; or name=level,...)")
    elif isinstance(quality, Mapping):
        requested = quality
    else:
        raise InputError(f"quality must be a preset name, 'name=level,...' or a dict, not {type(quality).__name__}")
    selection = dict(best)
    hidden = {r.name for r in scheme.rewards if not r.offered}
    for name, level in requested.items():
        if name in hidden:
            raise InputError(f"quality code {name!r} is not offered by this model: it was measured not to move "
                             "what it names (`rationalize info` shows the measurement)")
        if name not in levels:
            known = ", ".join(n for n in levels if n not in hidden) or "none: this model has no quality codes"
            raise InputError(f"unknown quality code {name!r} (known: {known})")
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= levels[name]:
            raise InputError(f"quality {name}={level!r} is outside 1..{levels[name]}")
        selection[name] = level
    return selection


def _parse_quality_text(text: str) -> dict[str, int]:
    """``"name=level,..."`` as a dict; levels are ASCII integers (range checks are the caller's)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, level = part.partition("=")
        level = level.strip()
        shown = part if len(part) <= 40 else part[:37] + "..."
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses with a ValueError
        if not sep or not name.strip() or not re.fullmatch(r"[+-]?[0-9]+", level):
            raise InputError(f"cannot read quality {shown!r}: expected name=level, e.g. diversity=5")
        if len(name.strip()) > 64:  # reward names are at most 64 characters (manifest.validate)
            raise InputError(f"cannot read quality {shown!r}: a name of {len(name.strip())} characters is no quality code")
        if len(level.lstrip("+-").lstrip("0")) > 9:  # int() of 4,300+ digits raises; no scheme has such levels
            raise InputError(f"quality {name.strip()[:40]!r}: level of {len(level)} digits is out of range")
        out[name.strip()] = int(level)
    return out


def render_codes(scheme: ControlScheme, selection: Mapping[str, int]) -> str:
    """The control-code text for a selection, in the scheme's reward order ('' when none): a reward's
    ``level_text`` where it has one, else ``code_format``."""
    codes = [r.level_text[selection[r.name] - 1] if r.level_text else
             scheme.code_format.format(name=r.name, level=selection[r.name])
             for r in scheme.rewards if r.name in selection]
    return scheme.separator.join(codes) + scheme.suffix if codes else ""


# ---------------------------------------------------------------- prompts


def choice_label(index: int) -> str:
    """The letter of choice ``index`` (0 -> 'A')."""
    return _LABELS[index]


def _render(fmt: str, values: Mapping[str, str], where: str) -> Prompt:
    """Fill ``fmt``'s placeholders: its literal text is the template's (trusted), each value keeps its own parts.

    A plain ``str`` value is untrusted text; a :class:`Prompt` value keeps what it says of its parts.
    """
    parts = []
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise BundleError(f"prompt template {where}: {exc}") from None
    for literal, name, spec, conversion in fields:
        parts.append((literal, True))
        if name is None:
            continue
        if name not in values or spec or conversion:
            raise BundleError(f"prompt template {where}: unsupported placeholder {{{name}}} "
                              f"(allowed: {', '.join('{' + k + '}' for k in values)})")
        parts.extend(parts_of(values[name]))
    return Prompt(parts)


def _choice_text(text: str, separator: str) -> str:
    """A choice as the prompt shows it: quoted (JSON-style) when it contains the separator, so that
    "red, white" cannot read as two choices; other choices are shown as they are."""
    key = separator.strip() or separator
    if (key and key in text) or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def build_user_text(template: PromptTemplate, question: str, choices: Sequence[str] | None, codes: str = "") -> Prompt:
    """The user turn: codes, question and choices as the template places them (question and choices untrusted)."""
    block: str = ""
    if choices:
        items = [_render(template.choice_item, {"label": Prompt.template(choice_label(i)),
                                                "text": _choice_text(str(c), template.choice_separator)},
                         "choice_item")
                 for i, c in enumerate(choices)]
        joined: str = Prompt.template("")
        for i, item in enumerate(items):
            joined = joined + (Prompt.template(template.choice_separator) if i else "") + item
        block = _render(template.choices_block, {"choices": joined}, "choices_block")
    return _render(template.user, {"codes": Prompt.template(codes), "question": str(question),
                                   "choices": block or Prompt.template("")}, "user")


def build_chat(template: PromptTemplate, user: str) -> Prompt:
    """The template's chat wrapper around a user turn (a plain ``str`` user turn is untrusted throughout)."""
    return _render(template.chat, {"system": Prompt.template(template.system), "user": user}, "chat")


def build_prompt(template: PromptTemplate, question: str, choices: Sequence[str] | None, codes: str = "",
                 placement: CodePlacement = "user") -> Prompt:
    """The full model input text, chat wrapper included, as a :class:`Prompt` that marks the template's parts.

    ``codes`` (trusted: :func:`render_codes` writes it from the manifest) goes where ``placement`` says
    (:attr:`ControlScheme.placement`): the user turn's ``{codes}``, or the start of the response.
    """
    if placement == "response":
        return build_chat(template, build_user_text(template, question, choices)) + Prompt.template(codes)
    return build_chat(template, build_user_text(template, question, choices, codes))


def fixed_prefix(template: PromptTemplate) -> Prompt:
    """The text every prompt of this template starts with (the chat wrapper and system prompt before the user text)."""
    full = build_chat(template, "\x00")
    return full.head(full.index("\x00"))


def format_target(rationale: str, answer: str, marker: str = ANSWER_MARKER) -> str:
    """The I-RO training target ``<rationale> <marker> <answer>.`` (the answer sentence alone without a rationale)."""
    rationale = rationale.strip()
    sep = " " if rationale else ""
    return f"{rationale}{sep}{marker} {answer.strip().rstrip('.')}."


def choice_continuation(choice: str) -> str:
    """The text after the answer marker that scores ``choice``: `` <choice>.``, the end of :func:`format_target`.

    The runtime's choice scoring, eval's consistency and the trainer's consistency reward all score this
    text, so they rank choices the same way and as the student was trained to write them.
    """
    return f" {choice.strip().rstrip('.')}."


def answer_context(prompt: str, rationale: str, marker: str = ANSWER_MARKER) -> str:
    """``prompt``, the rationale and the answer marker: where a choice is scored (the marker alone
    without a rationale), by the runtime and by the judges alike."""
    rationale = rationale.strip()
    return prompt + (f"{rationale} {marker}" if rationale else marker)


# ---------------------------------------------------------------- answer parsing


@dataclass(frozen=True)
class ParsedAnswer:
    """What the parser read: the answer (None if unreadable), the rationale and how it was found."""

    answer: str | None
    rationale: str
    strategy: str | None


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().strip()
    text = re.sub(r"[*_`\"“”‘’']", "", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip(" .,:;!?()[]")


def _match_choice(fragment: str, choices: Sequence[str]) -> str | None:
    """Map a fragment of text onto one choice: its text, its letter, or a unique leading match."""
    norm = _normalize(fragment)
    if not norm:
        return None
    normalized = [_normalize(c) for c in choices]
    for choice, key in zip(choices, normalized):
        if norm == key:
            return choice
    letter = re.fullmatch(r"(?:option |choice )?\(?([a-z])\)?(?:[.):]| |$).*", norm)
    if letter:
        idx = ord(letter.group(1)) - ord("a")
        rest = norm[letter.end(1):].strip(" .):")
        if idx < len(choices) and (not rest or rest == normalized[idx] or rest.startswith(normalized[idx])):
            return choices[idx]
    # "yes, because ..." or "(b) a fish": the fragment starts with exactly one choice.
    by_length = sorted(zip(choices, normalized), key=lambda cn: -len(cn[1]))
    for choice, key in by_length:
        if re.match(rf"{re.escape(key)}\b", norm):
            return choice
    mentioned = [c for c, k in zip(choices, normalized) if re.search(rf"\b{re.escape(k)}\b", norm)]
    return mentioned[0] if len(mentioned) == 1 else None


def _clean_free_answer(fragment: str) -> str | None:
    first = fragment.strip().split("\n", 1)[0]
    first = re.split(r"(?<=[^\d])\.(?:\s|$)|\.$", first, maxsplit=1)[0]
    cleaned = first.strip().strip("*_`\"'“”").strip(" .,:;!")
    if not cleaned:
        return None
    head = re.split(r"[\s,.;:!]", cleaned, maxsplit=1)[0].lower()
    return head if head in _YES_NO else cleaned


def parse_answer(text: str, choices: Sequence[str] | None = None, settings: ParserSettings | None = None) -> ParsedAnswer:
    """Read the answer from generated text; never raises on any text.

    With ``choices`` the answer is always one of them (by text, letter or unique
    mention) or None; without, it is the cleaned text after the marker.
    """
    settings = settings or ParserSettings()
    text = text if isinstance(text, str) else str(text)
    for strategy in settings.strategies:
        found = _STRATEGIES[strategy](text, choices, settings.marker)
        if found is not None:
            answer, rationale = found
            return ParsedAnswer(answer, rationale.strip(), strategy)
    return ParsedAnswer(None, text.strip(), None)


# Looser phrasings models use instead of the marker ("The answer to this question is yes").
_LOOSE_MARKER = re.compile(
    r"\b(?:the\s+)?(?:correct\s+|final\s+)?answer(?:\s+to\s+(?:this|the)\s+question)?\s*(?:is\b|:)\s*[:\-]?\s*",
    re.IGNORECASE,
)


def _last_marker(text: str, marker: str) -> re.Match | None:
    words = [re.escape(w) for w in marker.split()]
    pattern = re.compile(r"\s+".join(words) + r"\s*[:\-]?\s*", re.IGNORECASE)
    hits = list(pattern.finditer(text)) or list(_LOOSE_MARKER.finditer(text))
    return hits[-1] if hits else None


def text_before_answer(text: str, marker: str = ANSWER_MARKER) -> str:
    """The rationale part of generated text: everything before the last answer marker (all of it if none)."""
    hit = _last_marker(text, marker)
    return (text[: hit.start()] if hit else text).strip()


def _by_marker(text: str, choices: Sequence[str] | None, marker: str) -> tuple[str, str] | None:
    hit = _last_marker(text, marker)
    if hit is None:
        return None
    tail = text[hit.end():].split("\n", 1)[0]
    answer = _match_choice(tail, choices) if choices else _clean_free_answer(tail)
    if answer is None:
        return None
    before = text[: hit.start()]
    if before.strip():
        return answer, before
    # The answer came first ("The answer is no. Penguins ..."): the rest explains it.
    rest = re.split(r"(?<=[.!?])\s+|\n", text[hit.end():], maxsplit=1)
    return answer, rest[1] if len(rest) > 1 else ""


def _by_leading(text: str, choices: Sequence[str] | None, marker: str) -> tuple[str, str] | None:
    candidates = list(choices) if choices else ["yes", "no"]
    head = text.lstrip()
    for choice in sorted(candidates, key=len, reverse=True):
        m = re.match(rf"[*_\"']*(?:answer\s*:\s*)?{re.escape(choice)}\b[*_\"']*[\s.,:;!]*", head, re.IGNORECASE)
        if m:
            return choice, head[m.end():]
    return None


def _by_mention(text: str, choices: Sequence[str] | None, marker: str) -> tuple[str, str] | None:
    if not choices:
        return None
    norm = _normalize(text)
    mentioned = [c for c in choices if re.search(rf"\b{re.escape(_normalize(c))}\b", norm)]
    return (mentioned[0], text) if len(mentioned) == 1 else None


_STRATEGIES = {"marker": _by_marker, "leading": _by_leading, "mention": _by_mention}
