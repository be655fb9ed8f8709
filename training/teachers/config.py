"""Settings of ``rationalize teach``, as a dataclass that round-trips to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rationalizer.config_checks import Range, check_settings
from rationalizer.errors import ConfigError

from ..data import FieldMap


@dataclass
class TeachConfig:
    """Every field has a ``rationalize teach`` flag (dashes for underscores; ``--timeout``, ``--max-tokens``,
    ``--lambda`` and ``--question-field``... where the name differs), and ``--config FILE`` reads them."""

    data: str = field(metadata={"help": "Questions with gold answers (JSONL or CSV).", "nonempty": True})
    out: str = field(metadata={"help": "Output JSONL; results are appended as they arrive and a rerun skips ids "
                                       "already there.", "nonempty": True})
    teacher: str = field(metadata={"help": "An OpenAI-compatible base URL (http://host:port/v1) or a local HF model "
                                           "folder / hub id.", "nonempty": True})
    teacher_model: str | None = field(default=None, metadata={"help": "Model name sent to a served teacher."})
    api: Literal["chat", "completions"] = field(default="chat", metadata={"help": "Served endpoint kind."})
    api_key_env: str = field(default="RATIONALIZER_API_KEY", metadata={
        "help": "Environment variable that holds the API key (never the key itself)."})
    in_flight: int = field(default=4, metadata={"help": "Requests a served teacher keeps in flight.",
                                                "range": Range(1, 512)})
    timeout_s: float = field(default=120.0, metadata={"help": "Seconds a served teacher's request may take.",
                                                      "range": Range(0.1, 86_400)})
    retries: int = field(default=5, metadata={"help": "Tries per request to a served teacher.",
                                              "range": Range(1, 100)})
    counterfactual: bool = field(default=False, metadata={"help": "Also write a rationale for a wrong answer (SCOTT)."})
    require_match: bool = field(default=False, metadata={
        "help": "Keep only rationales whose stated answer is the one asked for."})
    max_words: int = field(default=150, metadata={"help": "Drop rationales longer than this many words.",
                                                  "range": Range(1, 10**6)})
    limit: int | None = field(default=None, metadata={"help": "Teach the first N questions only.",
                                                      "range": Range(1, 10**9)})
    skip_invalid: bool = field(default=False, metadata={"help": "Skip and count malformed rows instead of stopping."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and of the wrong answers chosen."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature (0: greedy).",
                                                      "range": Range(0, 5)})
    top_p: float = field(default=0.9, metadata={"help": "Top-p of sampling.", "range": Range(0, 1, low_open=True)})
    max_new_tokens: int = field(default=128, metadata={"help": "Most tokens per rationale.", "range": Range(1, 4096)})
    contrastive: bool = field(default=True, metadata={
        "help": "Local teacher: SCOTT's contrastive decoding (greedy); off: plain decoding."})
    lam: float = field(default=0.5, metadata={"help": "λ of contrastive decoding."})
    alpha: float = field(default=0.1, metadata={
        "help": "Plausibility floor of contrastive decoding: candidates need p >= alpha * max p.",
        "range": Range(0, 1)})
    batch_size: int = field(default=8, metadata={"help": "Local teacher: questions per batch.",
                                                 "range": Range(1, 65_536)})
    device: Literal["cpu", "cuda"] = field(default="cpu", metadata={"help": "Local teacher: where it runs."})
    fields: FieldMap = field(default_factory=FieldMap, metadata={"help": "Which input column holds each field."})
    candidates: int = field(default=1, metadata={
        "help": "Rationales the teacher samples per question (factual rows); above 1 needs --prefer-student "
                "and --temperature above 0 (a local teacher then samples plainly: contrastive decoding is "
                "greedy). A question's candidates go in one batch.", "range": Range(1, 64)})
    prefer_student: str | None = field(default=None, metadata={
        "help": "A student bundle: keep the candidate with the highest consistency gain P(gold | q, r) - "
                "P(gold | q) under it (eval's consistency) and write best/worst pairs. Counterfactual rows "
                "are asked once and not scored.", "nonempty": True})
    pairs_out: str | None = field(default=None, metadata={
        "help": "Where the best/worst pairs go (default: OUT with .pairs.jsonl), for `rationalize train dpo "
                "--pairs`.", "nonempty": True})

    def __post_init__(self) -> None:
        check_settings(self)
        where = type(self).__name__
        if self.candidates > 1 and self.prefer_student is None:
            raise ConfigError(where, "candidates", f"{self.candidates} needs prefer_student (--prefer-student "
                                                   "BUNDLE), the student that chooses among them")
        if self.candidates > 1 and self.temperature == 0:
            raise ConfigError(where, "candidates", f"{self.candidates} needs sampling: set temperature above 0 "
                                                   "(at 0 every candidate is the same greedy text)")
        if self.pairs_out is not None and self.prefer_student is None:
            raise ConfigError(where, "pairs_out", "is only written with prefer_student (--prefer-student BUNDLE)")

    @property
    def pairs_path(self) -> str | None:
        """The pairs file of a student-preferred run (None without ``prefer_student``)."""
        if self.prefer_student is None:
            return None
        return self.pairs_out or self.out.removesuffix(".jsonl") + ".pairs.jsonl"
