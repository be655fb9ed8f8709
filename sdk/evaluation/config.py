"""Settings of one evaluation, as a dataclass that round-trips to JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    """What to measure and how; every field has a command-line flag of the same name."""

    data: str
    """JSONL file in the project's schema (yes/no, multiple choice or free-form answers)."""
    limit: int | None = None
    """Evaluate the first N examples only."""
    max_new_tokens: int | None = None
    """Generation budget per question (default: the bundle's)."""
    seed: int = 0
    """Seed of the perturbation and the bootstrap: the same seed prints the same numbers."""
    simulator: str = "default"
    """Model for consistency: 'default' (the embedded base model), a bundle path, or 'none'."""
    verifier: str = "default"
    """Model for plausibility: 'default', a bundle path, an OpenAI-compatible base URL, or 'none'."""
    verifier_model: str | None = None
    """Model name to send to an OpenAI-compatible verifier."""
    faithfulness: bool = True
    """Run SCOTT's oracle, perturbed and counterfactual checks."""
    counterfactual: str | None = None
    """JSONL with counterfactual rationales (kind: counterfactual), matched to questions by id or text."""
    perturb_fraction: float = 0.5
    """Share of the student's rationale words replaced for the perturbed check."""
    bootstrap_samples: int = 1000
    skip_invalid: bool = False
    """Leave out (and count) the rows a model cannot take, instead of stopping before the run."""
