"""``rationalize bench``: a thin layer over :func:`rationalizer.bench.suite.run_bench`."""

from __future__ import annotations

import json

import click

from rationalizer.atomic import atomic_write_text


@click.command("bench")
@click.argument("bundles", nargs=-1)
@click.option("--tokens", type=click.IntRange(2, 2048), default=128, show_default=True,
              help="Most tokens per decode run.")
@click.option("--reps", type=click.IntRange(1, 50), default=3, show_default=True, help="Decode runs per measurement.")
@click.option("--threads", type=click.IntRange(1, 512), help="CPU threads (default: the idle cores this process may use; see the README).")
@click.option("--device", type=click.Choice(["all", "cpu", "cuda"]), default="all", show_default=True)
@click.option("--no-peers", is_flag=True, help="Only the SDK's backends, no raw llama-cpp-python/optimum/transformers.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures here.")
def bench_command(bundles: tuple[str, ...], tokens: int, reps: int, threads: int | None, device: str,
                  no_peers: bool, json_path: str | None) -> None:
    """Measure load time, time to first token, decode tokens/s, latency and peak RSS.

    BUNDLES are bundle folders or folders of bundles (an export's --out);
    default: the embedded model. Every backend that runs a bundle's format is
    measured, on the GPU too where one is usable, next to its peers on the same
    weights, and against the memory-bandwidth bound measured in the same run.

    \b
      rationalize bench
      rationalize bench exports/ --tokens 128 --reps 5 --json bench.json
    """
    from rationalizer.bench.suite import BenchPlan, find_bundles, markdown, run_bench

    devices = ["cpu", "cuda"] if device == "all" else [device]
    plan = BenchPlan(find_bundles(list(bundles)), tokens, reps, threads, devices, not no_peers)
    result = run_bench(plan, lambda m: click.echo(m, err=True))
    click.echo(markdown(result), nl=False)
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
