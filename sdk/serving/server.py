"""Run the app with uvicorn on a socket opened here, so a port in use is a clear error."""

from __future__ import annotations

import logging
import os
import socket

from ..errors import UserError
from ..runtime import Rationalizer
from .settings import ServeSettings

log = logging.getLogger(__name__)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; :class:`UserError` when the address cannot be used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(rationalizer: Rationalizer, settings: ServeSettings, log_level: str = "info") -> None:
    """Serve ``rationalizer`` until SIGINT or SIGTERM; the requests in flight finish first (uvicorn's
    graceful shutdown: a second signal stops at once)."""
    import uvicorn

    from .app import create_app

    sock = listen(settings.host, settings.port)
    app = create_app(rationalizer, settings)
    keyed = bool(os.environ.get(settings.api_key_env))
    log.info("serving %s (%s backend) on http://%s:%d; API key %s", rationalizer.name, rationalizer.backend_name,
             settings.host, settings.port, f"required (${settings.api_key_env})" if keyed else "not required")
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=None, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
