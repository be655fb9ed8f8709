"""``rationalize eval``'s library: run a model over a dataset and measure answers and rationales."""

from .config import EvalConfig
from .judges import Judges
from .paired import PairedDifference, paired_difference, paired_differences
from .pipeline import Evaluation, run_evaluation
from .runner import EvalRun, evaluate
from .store import RecordStore, fingerprint
from .summary import summarize
from .validation import EvalData, EvalRows, check_eval_rows, load_eval_data, read_eval_rows

__all__ = ["EvalConfig", "Judges", "Evaluation", "run_evaluation", "EvalRun", "evaluate", "summarize", "EvalData",
           "EvalRows", "load_eval_data", "read_eval_rows", "check_eval_rows", "RecordStore", "fingerprint",
           "PairedDifference", "paired_difference", "paired_differences"]
