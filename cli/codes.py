"""``rationalize codes BUNDLE --data FILE...``: does each quality code steer what it names?"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from rationalizer.backends import DEVICES, REGISTRY
from rationalizer.bundle import EMBEDDED, Bundle
from rationalizer.evaluation import EvalConfig
from rationalizer.evaluation.code_effect import (describe_interval, direction_for, effect_digits, keep_steering_codes,
                                                measure_code_effects, metric_of, steers)
from rationalizer.manifest import Manifest

from .config_options import options_from
from .options import check_remote, remote_options
from .reporting import new_progress


def _several_data(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--data`` given several times: the first file is the config's ``data`` (so ``--config`` and the
    checks work as for ``rationalize eval``), all of them are measured."""

    @functools.wraps(command)
    def run(data: tuple[str, ...], **kwargs: Any) -> Any:
        return command(data=data[0] if data else None, data_files=data, **kwargs)

    return click.option("--data", "data", multiple=True, type=click.Path(dir_okay=False),
                        help="JSONL eval file in the project's schema; repeat for several (their questions "
                             "are pooled).")(run)


@click.command("codes")
@click.argument("bundle")
@_several_data
@options_from(EvalConfig, exclude=("data", "faithfulness"), names={"max_new_tokens": "--max-tokens"})
@click.option("--backend", type=click.Choice(["auto", *REGISTRY]), default="auto", show_default=True)
@remote_options
@click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 512))
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the eval outputs behind the numbers.")
@click.option("--write", is_flag=True,
              help="Write the effects into the bundle's manifest; codes that do not steer are no longer offered.")
@click.option("--min-n", type=click.IntRange(1), default=100, show_default=True,
              help="With --write: a code measured on fewer paired questions is not offered, whatever its interval.")
def codes_command(config: EvalConfig, data_files: tuple[str, ...], bundle: str, backend: str, endpoint: str | None,
                  endpoint_model: str | None, device: str, threads: int | None, out: str | None, write: bool,
                  min_n: int) -> None:
    """Measure each quality code of BUNDLE: its metric at level 1 and at its top level, paired by question.

    A code steers when the 95% interval of the difference excludes 0 on the side the code promises
    (a higher length level: fewer rationale tokens). With --write, the manifest records each effect and
    offers only the codes that steer; the others stay in every prompt at their default level, cannot
    be asked for, and are named with the reason.
    """
    check_remote(backend, endpoint, endpoint_model)
    if write and bundle in EMBEDDED:
        raise click.UsageError(f"--write changes the bundle's manifest; {bundle!r} is the embedded model, "
                               "give a bundle folder")
    target = Bundle.load(bundle)  # a wrong path fails before any model loads
    progress = new_progress()
    try:
        effects = measure_code_effects(bundle, config, data=list(data_files) or None, backend=backend, device=device,
                                       threads=threads, out=out, progress=progress, endpoint=endpoint,
                                       endpoint_model=endpoint_model)
    finally:
        progress.close()
    rows = [("code", "metric", "low", "high", "difference [95% CI]", "n", "steers")]
    for levels in target.manifest.control.rewards:
        effect = effects.get(levels.name)
        known = metric_of(levels)
        if effect is None:
            rows.append((levels.name, known[0] if known else "-", "-", "-", "not measured", "0", "no"))
            continue
        d = effect_digits(effect)
        steering = steers(effect, direction_for(levels, effect.metric))
        rows.append((levels.name, effect.metric, f"{effect.low:.{d}f}", f"{effect.high:.{d}f}",
                     describe_interval(effect), str(effect.n), "yes" if steering else "no"))
    click.echo(_table(rows))
    if write:
        if not effects:  # writing would leave out every code for want of a measurement, not for a failure to steer
            raise click.ClickException("no code could be measured (see the warnings); the manifest is left as it is")
        manifest = Manifest.load(target.folder)  # as it is now, not as it was before the measurement
        manifest.control, left_out = keep_steering_codes(manifest.control, effects, min_n)
        path = manifest.save(target.folder)
        click.echo(f"wrote {path}")
        for name, reason in left_out.items():
            click.echo(f"not offered {name}: {reason}")


def _table(rows: list[tuple[str, ...]]) -> str:
    """A Markdown table, as ``rationalize eval`` prints its own."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|---" * len(rows[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)
