"""``rationalize eval``: accuracy, rationale quality and faithfulness, side by side."""

from __future__ import annotations

import json

import click

from rationalizer.backends import DEVICES, REGISTRY
from rationalizer.evaluation import EvalConfig, run_evaluation
from rationalizer.evaluation.report import markdown_table, paired_table

from .config_options import options_from
from .options import check_remote, remote_options
from .reporting import new_progress


@click.command("eval")
@click.argument("bundles", nargs=-1)
@options_from(EvalConfig, names={"max_new_tokens": "--max-tokens"})
@click.option("--backend", type=click.Choice(["auto", *REGISTRY]), default="auto", show_default=True)
@remote_options
@click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True)
@click.option("--quality", "-q", "qualities", multiple=True, help="Quality setting; repeat to compare several.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for per-example JSONL, summary and chart.")
@click.option("--threads", type=click.IntRange(1, 512))
@click.option("--restart", is_flag=True,
              help="Discard the records of an interrupted run with the same arguments instead of resuming it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON instead of a table.")
def eval_command(config: EvalConfig, bundles: tuple[str, ...], backend: str, endpoint: str | None,
                 endpoint_model: str | None, device: str, qualities: tuple[str, ...], out: str | None,
                 threads: int | None, restart: bool, as_json: bool) -> None:
    """Evaluate BUNDLES (default: the embedded model) on --data; several are compared side by side.

    Every row is checked against each model before the first generation; each bad one is named as
    file:line. Records are kept as they are made, so an eval that was killed or failed resumes
    where it stopped when it is run again with the same arguments. With several bundles or -q
    settings, each run after the first is compared with the first example by example: the mean
    difference of every per-example metric, with a bootstrap 95% interval. With --backend http
    the bundles run on the server at --endpoint, --concurrency questions at once.
    """
    check_remote(backend, endpoint, endpoint_model)
    progress = new_progress()
    try:
        result = run_evaluation(config, bundles, qualities, backend=backend, device=device, threads=threads,
                                out=out, restart=restart, progress=progress, endpoint=endpoint,
                                endpoint_model=endpoint_model)
    finally:
        progress.close()
    summaries = [run.summary for run in result.runs]
    if as_json:
        click.echo(json.dumps(summaries, indent=2, ensure_ascii=False))
    else:
        click.echo(markdown_table(result.runs))
        if result.paired:
            click.echo("\n" + paired_table(result.paired) + "\n")
        click.echo("wall time: " + ", ".join(f"{s['label']} {s['wall_time_s']:.1f} s" for s in summaries))
