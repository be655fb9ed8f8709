"""``rationalize info [PATH]``: what a bundle holds."""

from __future__ import annotations

import json

import click

from rationalizer.bundle import Bundle
from rationalizer.dataclass_json import to_dict
from rationalizer.evaluation.code_effect import describe_effect, metric_of
from rationalizer.manifest import RewardLevels


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _effect(r: RewardLevels) -> str:
    """What the code was measured to move, or which metric it is meant to move."""
    if r.effect is not None:
        return f"moves {describe_effect(r.effect)}"
    known = metric_of(r)
    return f"(metric {known[0]}: effect not measured)" if known else "(effect not measured)"


@click.command()
@click.argument("path", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.option("--verify", is_flag=True, help="Hash every weight file and compare with the manifest.")
def info(path: str | None, as_json: bool, verify: bool) -> None:
    """Show a bundle's manifest: formats, files, sizes, quality codes (default: the embedded model)."""
    bundle = Bundle.load(path)
    m = bundle.manifest
    if verify:
        for fmt in bundle.formats():
            bundle.verify(fmt, "full")
    if as_json:
        data = to_dict(m)
        data["files_resolved"] = {fmt: [str(bundle.path_of(wf)) for wf in wfs] for fmt, wfs in m.files.items()}
        if verify:
            data["verified"] = True
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"{m.name}  (format version {m.format_version})")
    if m.description:
        click.echo(f"  {m.description}")
    click.echo(f"base model: {m.base_model}    distilled: {'yes' if m.distilled else 'no'}")
    click.echo("files:")
    for fmt, wfs in m.files.items():
        for wf in wfs:
            where = f" [from package {wf.package}]" if wf.package else ""
            quant = f" ({wf.quantization})" if wf.quantization else ""
            click.echo(f"  {fmt:5} {wf.role:8} {_size(wf.size):>9}  {wf.path}{quant}{where}  sha256 {wf.sha256[:12]}...")
    if m.control.rewards:
        click.echo("quality codes:")
        for r in m.control.rewards:
            default = m.control.default.get(r.name, r.levels)
            desc = f"  {r.description}" if r.description else ""
            offered = "" if r.offered else f" NOT OFFERED (written at level {default}, not selectable)"
            click.echo(f"  {r.name}: levels 1..{r.levels} (default {default}){offered} {_effect(r)}{desc}")
        for name, sel in m.control.presets.items():
            click.echo(f"  preset {name}: " + ",".join(f"{k}={v}" for k, v in sel.items()))
    else:
        click.echo("quality codes: none (this model has no control codes)")
    click.echo(f"answer parser: marker {m.parser.marker!r}, strategies {', '.join(m.parser.strategies)}")
    g = m.generation
    click.echo(f"limits: {g.max_new_tokens} new tokens by default, context {g.context_length}, "
               f"question up to {g.max_question_chars} characters")
    for key, value in m.provenance.items():
        click.echo(f"provenance.{key}: {value}")
    for key, value in m.eval_results.items():
        click.echo(f"eval.{key}: {value}")
    if verify:
        click.echo("verified: every weight file matches its sha256")
