"""Settings of ``rationalize teach``, as a dataclass that round-trips to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import FieldMap


@dataclass
class TeachConfig:
    """Every field has a ``rationalize teach`` flag of the same name (dashes for underscores)."""

    data: str
    """Input JSONL or CSV of questions with gold answers."""
    out: str
    """Output JSONL; results are appended as they arrive and a rerun skips ids already there."""
    teacher: str
    """An OpenAI-compatible base URL (http://host:port/v1) or a local HF model folder / hub id."""
    teacher_model: str | None = None
    """Model name sent to a served teacher."""
    api: str = "chat"
    """Served endpoint kind: chat or completions."""
    api_key_env: str = "RATIONALIZER_API_KEY"
    """Environment variable that holds the API key (never the key itself)."""
    in_flight: int = 4
    """Requests a served teacher keeps in flight."""
    timeout_s: float = 120.0
    retries: int = 5
    counterfactual: bool = False
    """Also write a rationale for a wrong answer (SCOTT)."""
    require_match: bool = False
    """Keep only rationales whose stated answer is the one asked for."""
    max_words: int = 150
    """Drop rationales longer than this many words."""
    limit: int | None = None
    skip_invalid: bool = False
    seed: int = 0
    temperature: float = 0.0
    top_p: float = 0.9
    max_new_tokens: int = 128
    contrastive: bool = True
    """Local teacher: SCOTT's contrastive decoding (greedy); off: plain decoding."""
    lam: float = 0.5
    """λ of contrastive decoding."""
    alpha: float = 0.1
    """Plausibility floor of contrastive decoding: candidates need p >= alpha * max p."""
    batch_size: int = 8
    device: str = "cpu"
    fields: FieldMap = field(default_factory=FieldMap)
