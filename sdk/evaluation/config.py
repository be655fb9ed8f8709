"""Settings of one evaluation, as a dataclass that round-trips to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from rationalizer.config_checks import Range, check_settings


@dataclass
class EvalConfig:
    """What to measure and how; every field has a ``rationalize eval`` flag (``--max-tokens`` for
    ``max_new_tokens``), and ``--config FILE`` reads them from JSON."""

    data: str = field(metadata={"help": "JSONL file in the project's schema (yes/no, multiple choice or free-form "
                                        "answers)."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N examples only.",
                                                      "range": Range(1, 10**9)})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Generation budget per question (default: the bundle's).", "range": Range(1, 4096)})
    seed: int = field(default=0, metadata={
        "help": "Seed of the perturbation and the bootstrap: the same seed prints the same numbers."})
    simulator: str = field(default="default", metadata={
        "help": "Model for consistency: 'default' (the embedded base model), a bundle path, or 'none'."})
    verifier: str = field(default="default", metadata={
        "help": "Model for plausibility: 'default', a bundle path, an OpenAI-compatible base URL, or 'none'."})
    verifier_model: str | None = field(default=None, metadata={
        "help": "Model name to send to an OpenAI-compatible verifier."})
    faithfulness: bool = field(default=True, metadata={"help": "Run SCOTT's oracle, perturbed and counterfactual checks."})
    counterfactual: str | None = field(default=None, metadata={
        "help": "JSONL with counterfactual rationales (kind: counterfactual), matched to questions by id or text."})
    perturb_fraction: float = field(default=0.5, metadata={
        "help": "Share of the student's rationale words replaced for the perturbed check.", "range": Range(0, 1)})
    bootstrap_samples: int = field(default=1000, metadata={
        "help": "Bootstrap resamples behind each confidence interval.", "range": Range(1, 10**6)})
    concurrency: int = field(default=1, metadata={
        "help": "Questions answered at once, on a backend whose calls run in parallel (http: a server); "
                "the records and their order are those of a run one at a time.", "range": Range(1, 256)})
    skip_invalid: bool = field(default=False, metadata={
        "help": "Leave out (and count) the rows a model cannot take, instead of stopping before the run."})

    def __post_init__(self) -> None:
        check_settings(self)
