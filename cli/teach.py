"""``rationalize teach``: a teacher writes rationales for labelled questions."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from rationalizer.dataclass_json import to_dict
from rationalizer.training.data import FieldMap
from rationalizer.training.teachers import TeachConfig, load_teacher
from rationalizer.training.teachers.runner import teach

from .config_options import options_from
from .reporting import new_progress


@click.command("teach")
@options_from(TeachConfig, names={"timeout_s": "--timeout", "max_new_tokens": "--max-tokens", "lam": "--lambda",
                                  **{f"fields.{f.name}": f"--{f.name}-field" for f in dataclasses.fields(FieldMap)}})
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
def teach_command(config: TeachConfig, as_json: bool) -> None:
    """A teacher writes a rationale for each question's gold answer (and a counterfactual one).

    With --candidates K --prefer-student BUNDLE it samples K per question and keeps the one the student
    gains most from (eval's consistency), writing best/worst pairs for `rationalize train dpo --pairs`.
    """
    teacher = load_teacher(config)
    progress = new_progress()
    try:
        summary = teach(config, teacher, progress)
    finally:
        progress.close()
    report = {**to_dict(summary), "teacher": teacher.name, "teacher_accuracy": summary.teacher_accuracy,
              "per_minute": round(summary.per_minute, 2), "out": config.out}
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    filtered = ", ".join(f"{k} {v}" for k, v in summary.filtered.items())
    acc = f"{summary.teacher_accuracy:.3f} of {summary.stated}" if summary.teacher_accuracy is not None else "n/a"
    click.echo(f"done {summary.done}, failed {summary.failed}, filtered {sum(summary.filtered.values())} ({filtered}), "
               f"already done {summary.already_done}, invalid rows skipped {summary.invalid_rows}, "
               f"repeated questions skipped {summary.duplicate_questions}")
    click.echo(f"teacher accuracy (stated answer = answer asked for): {acc}; "
               f"{summary.per_minute:.1f} rationales/min over {summary.wall_time_s:.1f} s -> {config.out}")
    if summary.pairs_out is not None:
        click.echo(f"student {config.prefer_student} chose among {summary.candidates} candidates; "
                   f"{summary.pairs} best/worst pairs -> {summary.pairs_out} (rationalize train dpo --pairs)")
    for error in summary.errors:
        click.echo(f"  {error}", err=True)
    if summary.failed:
        sys.exit(1)
