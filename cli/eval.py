"""``rationalize eval``: accuracy, rationale quality and faithfulness, side by side."""

from __future__ import annotations

import json
import sys

import click

from rationalizer import Rationalizer
from rationalizer.backends import DEVICES, REGISTRY
from rationalizer.dataset import Example, read_examples
from rationalizer.evaluation import EvalConfig, Judges, evaluate
from rationalizer.evaluation.report import markdown_table, write_outputs


def _counterfactual_index(rows: list[Example]) -> dict[str, Example]:
    index: dict[str, Example] = {}
    for row in rows:
        index.setdefault(row.id, row)
        index.setdefault(row.question.lower(), row)
    return index


@click.command("eval")
@click.argument("bundles", nargs=-1)
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="JSONL in the project's schema.")
@click.option("--limit", type=click.IntRange(1), help="Evaluate the first N examples.")
@click.option("--backend", type=click.Choice(["auto", *REGISTRY]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True)
@click.option("--quality", "-q", "qualities", multiple=True, help="Quality setting; repeat to compare several.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for per-example JSONL, summary and chart.")
@click.option("--simulator", default="default", show_default=True, help="Consistency model: default, a bundle, none.")
@click.option("--verifier", default="default", show_default=True,
              help="Plausibility model: default, a bundle, an OpenAI-compatible base URL, none.")
@click.option("--verifier-model", help="Model name for an OpenAI-compatible verifier.")
@click.option("--counterfactual", type=click.Path(dir_okay=False), help="JSONL of counterfactual rationales.")
@click.option("--no-faithfulness", is_flag=True, help="Skip the oracle, perturbed and counterfactual checks.")
@click.option("--max-tokens", type=click.IntRange(1, 4096), help="Generation budget per question.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 512))
@click.option("--json", "as_json", is_flag=True, help="Print the summaries as JSON instead of a table.")
def eval_command(bundles: tuple[str, ...], data: str, limit: int | None, backend: str, device: str,
                 qualities: tuple[str, ...], out: str | None, simulator: str, verifier: str,
                 verifier_model: str | None, counterfactual: str | None, no_faithfulness: bool,
                 max_tokens: int | None, seed: int, threads: int | None, as_json: bool) -> None:
    """Evaluate BUNDLES (default: the embedded model) on --data; several are compared side by side."""
    config = EvalConfig(data=data, limit=limit, max_new_tokens=max_tokens, seed=seed, simulator=simulator,
                        verifier=verifier, verifier_model=verifier_model, faithfulness=not no_faithfulness,
                        counterfactual=counterfactual)
    rows = read_examples(data)
    examples = [r for r in rows if r.kind == "factual"][:limit]
    extra_cf = read_examples(counterfactual, kind="counterfactual") if counterfactual else []
    cf_index = _counterfactual_index([r for r in rows if r.kind == "counterfactual"] + extra_cf)
    models = [Rationalizer.load(None if b == "default" else b, backend=backend, device=device, threads=threads)
              for b in (bundles or ("default",))]
    for model in models:  # fail on a bad quality before any long run
        for q in qualities or ("best",):
            model.prompt("check", None, q)
    judges = Judges.load(config, threads)
    runs = []
    try:
        for i, model in enumerate(models):
            for q in qualities or ("best",):
                label = model.name if len(models) == 1 or len({m.name for m in models}) == len(models) else f"{model.name}#{i + 1}"
                if len(qualities) > 1:
                    label += f" [{q}]"
                with click.progressbar(length=len(examples), label=label, file=sys.stderr,
                                       show_eta=True, show_pos=True) as bar:
                    runs.append(evaluate(model, examples, config, judges, q, label, cf_index, bar.update))
    finally:
        judges.close()
        for model in models:
            model.close()
    if as_json:
        click.echo(json.dumps([r.summary for r in runs], indent=2, ensure_ascii=False))
    else:
        click.echo(markdown_table(runs))
        click.echo("wall time: " + ", ".join(f"{r.label} {r.summary['wall_time_s']:.1f} s" for r in runs))
    if out:
        paths = write_outputs(runs, out)
        click.echo(f"wrote {', '.join(str(p) for p in paths.values())}", err=True)
