"""``rationalize eval``: accuracy, rationale quality and faithfulness, side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rationalizer import Rationalizer
from rationalizer.backends import DEVICES, REGISTRY
from rationalizer.dataset import Example
from rationalizer.evaluation import (EvalConfig, EvalData, EvalRun, Judges, RecordStore, check_eval_rows, evaluate,
                                     fingerprint, read_eval_rows)
from rationalizer.evaluation.report import markdown_table, write_outputs
from rationalizer.paths import cache_dir
from rationalizer.prompting import resolve_quality

from .config_options import options_from


def _counterfactual_index(rows: list[Example]) -> dict[str, Example]:
    index: dict[str, Example] = {}
    for row in rows:
        index.setdefault(row.id, row)
        index.setdefault(row.question.lower(), row)
    return index


# What a run's records depend on besides its rows, model and quality (those are hashed in full);
# the data path, the limit and skipping are left out because their effect is in the rows chosen,
# and the bootstrap only changes the summary, which is always computed again from the records.
_NOT_IN_FINGERPRINT = ("data", "counterfactual", "limit", "skip_invalid", "bootstrap_samples")


def _label(models: list[Rationalizer], i: int, quality: str, several_qualities: bool) -> str:
    model = models[i]
    label = model.name if len(models) == 1 or len({m.name for m in models}) == len(models) else f"{model.name}#{i + 1}"
    return f"{label} [{quality}]" if several_qualities else label


@click.command("eval")
@click.argument("bundles", nargs=-1)
@options_from(EvalConfig, exclude=("bootstrap_samples",), names={"max_new_tokens": "--max-tokens"})
@click.option("--backend", type=click.Choice(["auto", *REGISTRY]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True)
@click.option("--quality", "-q", "qualities", multiple=True, help="Quality setting; repeat to compare several.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for per-example JSONL, summary and chart.")
@click.option("--threads", type=click.IntRange(1, 512))
@click.option("--restart", is_flag=True,
              help="Discard the records of an interrupted run with the same arguments instead of resuming it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON instead of a table.")
def eval_command(config: EvalConfig, bundles: tuple[str, ...], backend: str, device: str, qualities: tuple[str, ...],
                 out: str | None, threads: int | None, restart: bool, as_json: bool) -> None:
    """Evaluate BUNDLES (default: the embedded model) on --data; several are compared side by side.

    Every row is checked against each model before the first generation; each bad one is named as
    file:line. Records are kept as they are made, so an eval that was killed or failed resumes
    where it stopped when it is run again with the same arguments.
    """
    chosen = qualities or ("best",)
    # a missing or unreadable file fails before any model loads
    read = read_eval_rows(config.data, config.counterfactual)
    models = [Rationalizer.load(None if b == "default" else b, backend=backend, device=device, threads=threads)
              for b in (bundles or ("default",))]
    judges = None
    try:
        checked = check_eval_rows(read, models, chosen, config.max_new_tokens, config.limit)
        if checked.invalid and not config.skip_invalid:
            checked.raise_if_invalid(lambda line: click.echo(line, err=True))
        if checked.invalid:
            click.echo(f"skipping {len(checked.invalid)} invalid rows (--skip-invalid):", err=True)
            for line in checked.listing():
                click.echo(f"  {line}", err=True)
        judges = Judges.load(config, threads)
        runs = _run_all(models, chosen, len(qualities) > 1, checked, config, judges, out, restart)
    finally:
        if judges is not None:
            judges.close()
        for model in models:
            model.close()
    if out:
        paths = write_outputs([run for run, _ in runs], out)
        click.echo(f"wrote {', '.join(str(p) for p in paths.values())}", err=True)
    for _, store in runs:
        store.discard()  # the records are in the outputs (or printed): nothing is left to resume
    summaries = [run.summary for run, _ in runs]
    if as_json:
        click.echo(json.dumps(summaries, indent=2, ensure_ascii=False))
    else:
        click.echo(markdown_table([run for run, _ in runs]))
        click.echo("wall time: " + ", ".join(f"{s['label']} {s['wall_time_s']:.1f} s" for s in summaries))


def _run_all(models: list[Rationalizer], qualities: tuple[str, ...], several: bool, checked: EvalData,
             config: EvalConfig, judges: Judges, out: str | None,
             restart: bool) -> list[tuple[EvalRun, RecordStore]]:
    """Every model at every quality, each run resuming from its own record store."""
    # beside the outputs when there are any, else in the user cache, so a rerun finds them either way
    folder = Path(out) / ".partial" if out else cache_dir() / "eval-partial"
    cf_index = _counterfactual_index(checked.counterfactuals)
    settings = {k: getattr(config, k) for k in config.__dataclass_fields__ if k not in _NOT_IN_FINGERPRINT}
    judge_names = {"simulator": judges.simulator.name if judges.simulator is not None else None,
                   "verifier": judges.verifier.name if judges.verifier is not None else None}
    runs = []
    for i, model in enumerate(models):
        for q in qualities:
            label = _label(models, i, q, several)
            identity = fingerprint(model, resolve_quality(model.manifest.control, q), settings, checked.examples,
                                   checked.lines, checked.counterfactuals, judge_names)
            store = RecordStore(folder, identity)
            if restart:
                store.discard()
            done = sum(1 for k in store.open() if k < len(checked.examples))
            if done:
                click.echo(f"resuming {label}: {done} of {len(checked.examples)} examples already done "
                           f"({store.path})", err=True)
            try:
                with click.progressbar(length=len(checked.examples), label=label, file=sys.stderr,
                                       show_eta=True, show_pos=True) as bar:
                    run = evaluate(model, checked.examples, config, judges, q, label, cf_index, bar.update,
                                   lines=checked.lines, store=store, skipped=checked.invalid)
            except BaseException:
                click.echo(f"\nthe records made so far are kept in {store.path}; "
                           "run the same command again to resume", err=True)
                raise
            runs.append((run, store))
    return runs
