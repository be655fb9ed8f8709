"""``rationalize teach``: a teacher writes rationales for labelled questions."""

from __future__ import annotations

import json
import sys

import click

from rationalizer.dataclass_json import to_dict
from rationalizer.training.data import FieldMap
from rationalizer.training.teachers import TeachConfig, load_teacher
from rationalizer.training.teachers.runner import TeachSummary, teach


@click.command("teach")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Questions with gold answers (JSONL or CSV).")
@click.option("--teacher", required=True, help="OpenAI-compatible base URL (http://host:port/v1) or a local HF model.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output JSONL (appended; reruns resume).")
@click.option("--teacher-model", help="Model name sent to a served teacher.")
@click.option("--api", type=click.Choice(["chat", "completions"]), default="chat", show_default=True)
@click.option("--api-key-env", default="RATIONALIZER_API_KEY", show_default=True,
              help="Environment variable holding the API key.")
@click.option("--in-flight", type=click.IntRange(1, 512), default=4, show_default=True,
              help="Requests kept in flight to a served teacher.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1), default=120.0, show_default=True)
@click.option("--retries", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--counterfactual", is_flag=True, help="Also write a rationale for a wrong answer (SCOTT).")
@click.option("--require-match", is_flag=True, help="Keep only rationales that state the answer asked for.")
@click.option("--max-words", type=click.IntRange(1), default=150, show_default=True)
@click.option("--limit", type=click.IntRange(1))
@click.option("--skip-invalid", is_flag=True, help="Skip and count malformed rows instead of stopping.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 5), default=0.0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--max-tokens", "max_new_tokens", type=click.IntRange(1, 4096), default=128, show_default=True)
@click.option("--contrastive/--no-contrastive", default=True, show_default=True,
              help="Local teacher: SCOTT's contrastive decoding.")
@click.option("--lambda", "lam", type=float, default=0.5, show_default=True, help="λ of contrastive decoding.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Plausibility floor of contrastive decoding.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Local teacher batch.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--question-field", default="question", show_default=True)
@click.option("--answer-field", default="answer", show_default=True)
@click.option("--choices-field", default="choices", show_default=True)
@click.option("--rationale-field", default="rationale", show_default=True)
@click.option("--id-field", default="id", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as JSON.")
def teach_command(question_field: str, answer_field: str, choices_field: str, rationale_field: str, id_field: str,
                  as_json: bool, **options) -> None:
    """A teacher writes a rationale for each question's gold answer (and a counterfactual one)."""
    fields = FieldMap(id=id_field, question=question_field, answer=answer_field, choices=choices_field,
                      rationale=rationale_field)
    config = TeachConfig(fields=fields, **options)
    teacher = load_teacher(config)
    bars: list = []  # the bar starts with the first result, so an error before any is the only line printed

    def progress(n: int, summary: TeachSummary) -> None:
        if not bars:
            bars.append(click.progressbar(length=max(summary.requested, 1), label=f"teach via {teacher.name}",
                                          file=sys.stderr, show_eta=True, show_pos=True,
                                          item_show_func=lambda s: s).__enter__())
        bars[0].length = max(summary.requested, 1)
        bars[0].update(n, f"{summary.per_minute:.1f}/min")

    try:
        summary = teach(config, teacher, progress)
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
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
    for error in summary.errors:
        click.echo(f"  {error}", err=True)
    if summary.failed:
        sys.exit(1)
