"""``rationalize ask`` (the default subcommand): answer one question."""

from __future__ import annotations

import json

import click

from rationalizer import Rationale, Rationalizer
from rationalizer.backends import DEVICES, REGISTRY

from .options import check_remote, parse_quality, read_question, remote_options, split_choices


@click.command()
@click.argument("question", nargs=-1)
@click.option("--choices", "-c", help='Answer options separated by "|", e.g. "yes|no".')
@click.option("--quality", "-q", help="Quality codes: a preset name, or name=level,... (default: best).")
@click.option("--model", "-m", "model", type=click.Path(), help="Bundle folder (default: the embedded model).")
@click.option("--backend", type=click.Choice(["auto", *REGISTRY]), default="auto", show_default=True)
@remote_options
@click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 512),
              help="CPU threads (default: the allowed cores other work leaves free; all up to 4, else half).")
@click.option("--max-tokens", type=click.IntRange(1, 4096), help="Most tokens to generate (default: the bundle's).")
@click.option("--temperature", "-t", type=click.FloatRange(0, 5), default=0.0, show_default=True,
              help="0 decodes greedily.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Random seed for sampling.")
@click.option("--votes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Self-consistency: sample N rationales and answer with the majority.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@click.option("--stream", is_flag=True, help="Print the text as it is generated.")
@click.option("--verbose", "-v", is_flag=True, help="Print tokens, timing and backend on stderr.")
def ask(question: tuple[str, ...], choices: str | None, quality: str | None, model: str | None, backend: str,
        endpoint: str | None, endpoint_model: str | None, device: str, threads: int | None,
        max_tokens: int | None, temperature: float, top_p: float, seed: int | None, votes: int, as_json: bool,
        stream: bool, verbose: bool) -> None:
    """Answer QUESTION and explain why (use - to read the question from stdin)."""
    check_remote(backend, endpoint, endpoint_model)
    if stream and as_json:
        raise click.UsageError("--stream and --json cannot be combined")
    if stream and votes > 1:
        raise click.UsageError("--stream and --votes cannot be combined (the answer is known after all votes)")
    text = read_question(question)
    options = dict(choices=split_choices(choices), quality=parse_quality(quality), max_new_tokens=max_tokens,
                   temperature=temperature, top_p=top_p, seed=seed)
    remote = dict(endpoint=endpoint, model=endpoint_model) if backend == "http" else {}
    r = Rationalizer.load(model, backend=backend, device=device, threads=threads, **remote)
    # Validate input before any output, so an error never follows partial text.
    r.prompt(text, options["choices"], options["quality"])
    if stream:
        result = None
        for item in r.stream(text, **options):
            if isinstance(item, Rationale):
                result = item
            else:
                click.echo(item, nl=False)
        assert result is not None
        click.echo("\n")
        click.echo(f"Answer: {_answer_text(result)}")
    else:
        result = r.rationalize(text, votes=votes, **options)
        if as_json:
            click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            click.echo(f"Answer: {_answer_text(result)}")
            if result.votes:
                click.echo("Votes: " + ", ".join(f"{answer} {n}" for answer, n in result.votes.items()))
            click.echo(f"Why: {result.rationale}" if result.answer is not None else f"Text: {result.text.strip()}")
    if verbose:
        speed = f"{result.tokens_per_s:.1f} tok/s" if result.tokens_per_s else "n/a"
        click.echo(f"[{r.name} via {r.backend_name} on {r.device}: {result.prompt_tokens} prompt tokens, "
                   f"{result.tokens_generated} generated, {result.latency_s:.2f} s, {speed}, "
                   f"stop: {result.finish_reason}]", err=True)


def _answer_text(result: Rationale) -> str:
    if result.answer is None:
        return "(no answer could be read from the model's text)"
    return f"{result.answer} (the text named no choice: the likeliest one after it)" if result.answer_scored else result.answer
