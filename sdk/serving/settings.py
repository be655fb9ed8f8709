"""Settings of ``rationalize serve``, as a dataclass that round-trips to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from rationalizer.config_checks import Range, check_settings


@dataclass
class ServeSettings:
    """How the HTTP server listens, admits and batches requests; every field has a ``rationalize serve`` flag."""

    host: str = field(default="127.0.0.1", metadata={
        "help": "Address to listen on (0.0.0.0: every interface; put a reverse proxy with TLS in front)."})
    port: int = field(default=8080, metadata={"help": "TCP port to listen on.", "range": Range(1, 65535)})
    max_queue: int = field(default=64, metadata={
        "help": "Most requests admitted at once (generating or waiting for the model); more get 503.",
        "range": Range(1, 100_000)})
    max_body_bytes: int = field(default=1_000_000, metadata={
        "help": "Largest request body accepted; larger ones get 413 before they are parsed.",
        "range": Range(1, 1 << 30)})
    batch_window_ms: float = field(default=5.0, metadata={
        "help": "How long a batching backend (ONNX, torch) waits for more requests to join a batch.",
        "range": Range(0, 1000)})
    workers: int = field(default=4, metadata={
        "help": "Model calls run at once on a backend whose calls run in parallel (others: one at a time).",
        "range": Range(1, 256)})
    api_key_env: str = field(default="RATIONALIZER_API_KEY", metadata={
        "help": "Environment variable holding the API key; when it is set, every route but /health needs "
                "'Authorization: Bearer <key>'.", "nonempty": True})

    def __post_init__(self) -> None:
        check_settings(self)
