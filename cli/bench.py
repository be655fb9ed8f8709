"""``rationalize bench``: a thin layer over :func:`rationalizer.bench.suite.run_bench`."""

from __future__ import annotations

import json

import click

from rationalizer.atomic import atomic_write_text
from rationalizer.bench.config import BenchConfig

from .config_options import options_from
from .reporting import new_progress


@click.command("bench")
@click.argument("bundles", nargs=-1)
@options_from(BenchConfig, exclude=("bundles",), names={"timeout_s": "--timeout"})
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures here.")
def bench_command(config: BenchConfig, json_path: str | None) -> None:
    """Measure load time, time to first token, decode tokens/s, latency and peak RSS.

    BUNDLES are bundle folders or folders of bundles (an export's --out);
    default: the embedded model. Every backend that runs a bundle's format is
    measured, on the GPU too where one is usable, next to its peers on the same
    weights, and against the memory-bandwidth bound measured in the same run.

    \b
      rationalize bench
      rationalize bench exports/ --tokens 128 --reps 5 --json bench.json
    """
    from rationalizer.bench.suite import markdown, run_bench

    progress = new_progress()
    try:
        result = run_bench(config, progress)
    finally:
        progress.close()
    click.echo(markdown(result), nl=False)
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
