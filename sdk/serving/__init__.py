"""``rationalize serve``: an HTTP API over a loaded :class:`~rationalizer.Rationalizer` (FastAPI, uvicorn).

Imported only by the serve command: ``import rationalizer`` never loads FastAPI.

    from rationalizer import Rationalizer
    from rationalizer.serving import ServeSettings, serve

    serve(Rationalizer.load(), ServeSettings(port=8080))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Rationalizer


def create_app(rationalizer: "Rationalizer", settings: ServeSettings | None = None) -> "FastAPI":
    """The FastAPI app serving ``rationalizer`` (see :func:`rationalizer.serving.app.create_app`)."""
    from .app import create_app as build

    return build(rationalizer, settings)


def serve(rationalizer: "Rationalizer", settings: ServeSettings, log_level: str = "info") -> None:
    """Serve ``rationalizer`` with uvicorn until SIGINT/SIGTERM (see :func:`rationalizer.serving.server.serve`)."""
    from .server import serve as run

    run(rationalizer, settings, log_level)


__all__ = ["ServeSettings", "create_app", "serve"]
