"""Metrics of answers and rationales, shared by ``rationalize eval`` and the trainer's rewards."""

from .answers import answers_match, normalize_answer
from .faithfulness import perturb_words
from .simulation import choice_probabilities, consistency, plausibility_prompt, yes_probability
from .stats import MetricValue, bootstrap_ci, mean_metric
from .text import diversity, repetition, word_ngrams

__all__ = [
    "answers_match", "normalize_answer", "perturb_words", "choice_probabilities", "consistency",
    "plausibility_prompt", "yes_probability", "MetricValue", "bootstrap_ci", "mean_metric", "diversity",
    "repetition", "word_ngrams",
]
