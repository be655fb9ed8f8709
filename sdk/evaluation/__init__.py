"""``rationalize eval``'s library: run a model over a dataset and measure answers and rationales."""

from .config import EvalConfig
from .judges import Judges
from .runner import EvalRun, evaluate
from .summary import summarize

__all__ = ["EvalConfig", "Judges", "EvalRun", "evaluate", "summarize"]
