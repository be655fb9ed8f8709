"""``rationalize serve``: answer questions over HTTP (the API lives in :mod:`rationalizer.serving`)."""

from __future__ import annotations

import logging

import click

from rationalizer.backends import DEVICES, REGISTRY
from rationalizer.serving import ServeSettings

from .config_options import options_from


@click.command("serve")
@click.argument("bundle", required=False, type=click.Path())
@click.option("--backend", type=click.Choice(["auto", *REGISTRY]), default="auto", show_default=True)
@click.option("--device", type=click.Choice(list(DEVICES)), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 512),
              help="CPU threads (default: the allowed cores other work leaves free; all up to 4, else half).")
@options_from(ServeSettings)
def serve_command(config: ServeSettings, bundle: str | None, backend: str, device: str, threads: int | None) -> None:
    """Serve BUNDLE (default: the embedded model) over HTTP until Ctrl-C or SIGTERM.

    \b
    POST /v1/rationalize        {"question": ..., "choices": [...], "stream": false}
    POST /v1/chat/completions   OpenAI-compatible (quality and choices as extra fields)
    GET  /v1/models, GET /health
    """
    from rationalizer import Rationalizer
    from rationalizer.serving import serve

    quiet = logging.getLogger("rationalizer").getEffectiveLevel() > logging.INFO  # --quiet
    with Rationalizer.load(bundle, backend=backend, device=device, threads=threads) as r:
        serve(r, config, log_level="warning" if quiet else "info")
