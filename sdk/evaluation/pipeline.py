"""One evaluation in one call: rows read and checked, models and judges loaded, every model at every
quality run resumably, the outputs written."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..paths import cache_dir
from ..progress import Progress, or_silent
from ..prompting import Quality, resolve_quality
from ..runtime import Rationalizer
from .config import EvalConfig
from .judges import Judges
from .paired import PairedDifference, paired_differences
from .report import write_outputs
from .runner import EvalRun, evaluate
from .store import RecordStore, fingerprint
from .validation import EvalData, check_eval_rows, read_eval_rows

logger = logging.getLogger(__name__)

# What a run's records depend on besides its rows, model and quality (those are hashed in full);
# the data path, the limit and skipping are left out because their effect is in the rows chosen,
# and the bootstrap only changes the summary, which is always computed again from the records.
# concurrency only changes how many examples run at once, not what each record holds.
_NOT_IN_FINGERPRINT = ("data", "counterfactual", "limit", "skip_invalid", "bootstrap_samples", "concurrency")


@dataclass
class Evaluation:
    """The runs of one evaluation, in model-then-quality order, and the output files written.

    ``paired`` holds, when there are several runs, each later run minus the first per example
    (by id) for every per-example metric, with bootstrap 95% intervals; each such run's summary
    carries its own under ``"paired"``.
    """

    runs: list[EvalRun]
    outputs: dict[str, Path] = field(default_factory=dict)
    paired: list[PairedDifference] = field(default_factory=list)


def run_evaluation(config: EvalConfig, bundles: Sequence[str] = ("default",), qualities: Sequence[Quality] = ("best",),
                   *, backend: str = "auto", device: str = "auto", threads: int | None = None,
                   out: str | Path | None = None, restart: bool = False,
                   progress: Progress | None = None, endpoint: str | None = None,
                   endpoint_model: str | None = None) -> Evaluation:
    """Evaluate each of ``bundles`` ("default": the embedded model) at each of ``qualities`` on ``config.data``.

    The data is read before any model loads, and every row is checked against every model before
    the first generation (bad rows raise, or are left out and counted with ``skip_invalid``).
    Records are kept as they are made, so a run that was killed or failed resumes where it
    stopped when it is called again with the same arguments (``restart`` starts it over). With
    ``out``, the per-example JSONL, summary and chart are written there; the kept records are
    removed once the runs are done, as nothing is left to resume. ``progress`` counts each run's
    examples anew; messages (resuming, rows skipped) go to this module's logger. ``backend="http"``
    runs every bundle on the server at ``endpoint`` (asking for ``endpoint_model``), ``config.concurrency``
    questions at once.
    """
    qualities = tuple(qualities) or ("best",)
    read = read_eval_rows(config.data, config.counterfactual)  # a missing file fails before any model loads
    wants_remote = backend == "http" or endpoint is not None or endpoint_model is not None
    remote = {"endpoint": endpoint, "model": endpoint_model} if wants_remote else {}
    models = [Rationalizer.load(None if b == "default" else b, backend=backend, device=device, threads=threads,
                                **remote) for b in (bundles or ("default",))]
    judges = None
    try:
        checked = check_eval_rows(read, models, qualities, config.max_new_tokens, config.limit)
        if checked.invalid and not config.skip_invalid:
            checked.raise_if_invalid()
        if checked.invalid:
            logger.warning("skipping %d invalid rows (--skip-invalid):", len(checked.invalid))
            for line in checked.listing():
                logger.warning("  %s", line)
        judges = Judges.load(config, threads)
        # beside the outputs when there are any, else in the user cache, so a rerun finds them either way
        folder = Path(out) / ".partial" if out else cache_dir() / "eval-partial"
        runs = _run_all(models, qualities, checked, config, judges, folder, restart, or_silent(progress))
    finally:
        if judges is not None:
            judges.close()
        for model in models:
            model.close()
    result = Evaluation([run for run, _ in runs])
    result.paired = paired_differences(result.runs, config.bootstrap_samples, config.seed)
    for run in result.runs[1:]:
        run.summary["paired"] = [d.to_dict() for d in result.paired if d.other == run.label]
    if out:
        result.outputs = write_outputs(result.runs, out, result.paired)
        logger.info("wrote %s", ", ".join(str(p) for p in result.outputs.values()))
    for _, store in runs:
        store.discard()  # the records are in the outputs (or returned): nothing is left to resume
    return result


def _label(models: Sequence[Rationalizer], i: int, quality: Quality, several_qualities: bool) -> str:
    model = models[i]
    label = model.name if len(models) == 1 or len({m.name for m in models}) == len(models) else f"{model.name}#{i + 1}"
    return f"{label} [{quality}]" if several_qualities else label


def _run_all(models: Sequence[Rationalizer], qualities: Sequence[Quality], checked: EvalData, config: EvalConfig,
             judges: Judges, folder: Path, restart: bool, progress: Progress) -> list[tuple[EvalRun, RecordStore]]:
    """Every model at every quality, each run resuming from its own record store in ``folder``."""
    cf_index = checked.counterfactual_index()
    settings = {k: getattr(config, k) for k in config.__dataclass_fields__ if k not in _NOT_IN_FINGERPRINT}
    judge_names = {"simulator": judges.simulator.name if judges.simulator is not None else None,
                   "verifier": judges.verifier.name if judges.verifier is not None else None}
    runs = []
    for i, model in enumerate(models):
        for q in qualities:
            label = _label(models, i, q, len(qualities) > 1)
            identity = fingerprint(model, resolve_quality(model.manifest.control, q), settings, checked.examples,
                                   checked.lines, checked.counterfactuals, judge_names)
            store = RecordStore(folder, identity)
            if restart:
                store.discard()
            done = sum(1 for k in store.open() if k < len(checked.examples))
            if done:
                logger.info("resuming %s: %d of %d examples already done (%s)", label, done, len(checked.examples),
                            store.path)
            progress.start(len(checked.examples), label)
            try:
                run = evaluate(model, checked.examples, config, judges, q, label, cf_index, progress,
                               lines=checked.lines, store=store, skipped=checked.invalid)
            except BaseException:
                logger.warning("the records made so far are kept in %s; run the same command again to resume",
                               store.path)
                raise
            runs.append((run, store))
    return runs
