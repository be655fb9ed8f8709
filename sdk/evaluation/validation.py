"""An eval's data, checked row by row against every model's limits before the first generation.

A row that a model cannot take (a question too long in characters or in tokens for
the context, too many or too long choices, a token budget that does not fit) would
otherwise stop the run when its turn comes, after all the rows before it. Every
problem is found first and named as ``file:line: problem``; with ``skip_invalid``
the bad rows are left out and counted instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from ..dataset import DataError, Example, read_numbered_examples
from ..errors import InputError
from ..prompting import Quality
from ..runtime import Rationalizer

logger = logging.getLogger(__name__)

MAX_LISTED = 20
"""Bad rows named one by one; the rest are counted."""


@dataclass
class EvalData:
    """The rows an eval answers, with their line numbers, and every row it cannot answer."""

    path: str
    examples: list[Example] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    counterfactuals: list[Example] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    """``file:line: problem`` for each bad row, in file order (the data file first)."""

    def counterfactual_index(self) -> dict[str, Example]:
        """The counterfactual rows by id and by lower-cased question (the first of each wins), as
        :func:`~rationalizer.evaluation.evaluate` matches them to questions."""
        index: dict[str, Example] = {}
        for row in self.counterfactuals:
            index.setdefault(row.id, row)
            index.setdefault(row.question.lower(), row)
        return index

    def listing(self, limit: int = MAX_LISTED) -> list[str]:
        """The first ``limit`` problems, then a line counting the rest."""
        shown = self.invalid[:limit]
        if len(self.invalid) > limit:
            shown.append(f"... and {len(self.invalid) - limit} more")
        return shown

    def raise_if_invalid(self) -> None:
        """Raise :class:`DataError` when a row is bad; with several, each is logged first (the error says
        they are listed above)."""
        if not self.invalid:
            return
        if len(self.invalid) == 1:
            raise DataError(f"{self.invalid[0]} (fix the row, or pass --skip-invalid to leave it out)")
        for line in self.listing():
            logger.error("%s", line)
        raise DataError(f"{len(self.invalid)} invalid rows (listed above), the first {self.invalid[0]}; "
                        "fix them, or pass --skip-invalid to leave them out")


@dataclass
class EvalRows:
    """The rows of an eval's files as read, before any model looked at them."""

    path: str
    rows: list[tuple[int, Example]]
    counterfactuals: list[Example]
    problems: list[tuple[int, int, str]]
    """(file: 0 the data, 1 the counterfactual file; line; ``file:line: problem``)."""


def read_eval_rows(path: str, counterfactual: str | None = None) -> EvalRows:
    """Read ``path`` and the ``counterfactual`` file, keeping every row's line and every row's problem."""
    rows, bad = read_numbered_examples(path)
    problems = [(0, line, message) for line, message in bad]
    counterfactuals = [ex for _, ex in rows if ex.kind == "counterfactual"]
    if counterfactual:
        cf_rows, cf_bad = read_numbered_examples(counterfactual)
        counterfactuals += [ex for _, ex in cf_rows if ex.kind == "counterfactual"]
        problems += [(1, line, message) for line, message in cf_bad]
    return EvalRows(path, rows, counterfactuals, problems)


def check_eval_rows(read: EvalRows, models: Sequence[Rationalizer], qualities: Sequence[Quality] = ("best",),
                    max_new_tokens: int | None = None, limit: int | None = None) -> EvalData:
    """The rows the eval answers (in file order, the first ``limit`` good ones) and every bad row.

    A quality a model does not have is refused first, as one error (it is no row's fault). Then
    each factual row up to the limit is checked against each model at each quality with
    :meth:`Rationalizer.check_input`, which counts the prompt, the token budget and the longest
    choice against the model's context. Schema problems are reported for every row of the files.
    """
    for model in models:
        for quality in qualities:
            model.prompt("check", None, quality)
    data = EvalData(read.path, counterfactuals=list(read.counterfactuals))
    problems = list(read.problems)
    for line, example in read.rows:
        if example.kind != "factual":
            continue
        if limit is not None and len(data.examples) >= limit:
            break
        problem = _problem(example, models, qualities, max_new_tokens)
        if problem is not None:
            problems.append((0, line, f"{read.path}:{line}: {problem}"))
            continue
        data.examples.append(example)
        data.lines.append(line)
    data.invalid = [message for _, _, message in sorted(problems, key=lambda p: (p[0], p[1]))]
    return data


def load_eval_data(path: str, models: Sequence[Rationalizer], qualities: Sequence[Quality] = ("best",),
                   max_new_tokens: int | None = None, limit: int | None = None,
                   counterfactual: str | None = None) -> EvalData:
    """:func:`read_eval_rows` then :func:`check_eval_rows`."""
    return check_eval_rows(read_eval_rows(path, counterfactual), models, qualities, max_new_tokens, limit)


def _problem(example: Example, models: Sequence[Rationalizer], qualities: Sequence[Quality],
             max_new_tokens: int | None) -> str | None:
    """Why some model cannot answer ``example`` at some quality, or None."""
    for model in models:
        for quality in qualities:
            try:
                model.check_input(example.question, example.choices, quality, max_new_tokens)
            except InputError as exc:
                return f"{exc} (model {model.name})" if len(models) > 1 else str(exc)
    return None
