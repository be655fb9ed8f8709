"""The HTTP API over a loaded :class:`~rationalizer.Rationalizer`, as a FastAPI app.

Routes: ``POST /v1/rationalize`` (the ``Rationale`` JSON, or server-sent events with ``stream``),
OpenAI's ``POST /v1/chat/completions``, ``POST /v1/completions`` (the raw model, for the remote backend:
:mod:`.completions`) and ``GET /v1/models``, and ``GET /health``. Every error is
``{"error": {"message", "type"}}`` with a 4xx status for what the client can fix, 503 when the queue
is full and 500 when the model failed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, UserError
from ..rationale import Rationale
from ..runtime import Rationalizer
from .bodies import parse_chat, parse_rationalize
from .completions import CompletionResult, completion_body, completion_chunk, parse_completion, usage_chunk
from .formats import DONE, ApiError, chat_chunk, chat_completion, error_body, event, finish_reason, usage
from .scheduler import END, Scheduler, ServerBusy, Ticket
from .settings import ServeSettings

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no buffering by nginx


def create_app(rationalizer: Rationalizer, settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``rationalizer``; its worker threads start and stop with the app's lifespan.

    When the environment variable ``settings.api_key_env`` is set (read now), every route but
    ``/health`` needs ``Authorization: Bearer <key>``.
    """
    settings = settings or ServeSettings()
    scheduler = Scheduler(rationalizer, settings.max_queue, settings.batch_window_ms / 1000, settings.workers)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        yield
        await asyncio.to_thread(scheduler.close)  # uvicorn has let the requests in flight finish

    app = FastAPI(title="rationalizer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    key = os.environ.get(settings.api_key_env) or None
    if key is not None:
        app.add_middleware(ApiKeyMiddleware, key=key)
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": rationalizer.name, "backend": rationalizer.backend_name,
                "max_queue": scheduler.max_queue, "batch_size": scheduler.batch_size, **asdict(scheduler.stats)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": rationalizer.name, "object": "model", "created": 0, "owned_by": "rationalizer",
            "backend": rationalizer.backend_name, "quality_codes": rationalizer.quality_codes()}]}

    @app.post("/v1/rationalize")
    async def rationalize(request: Request) -> Any:
        question, stream = parse_rationalize(await read_json(request, settings.max_body_bytes))
        ticket = scheduler.submit(question, stream)
        if not stream:
            return JSONResponse((await _wait(ticket)).to_dict())
        first = await _wait(ticket)
        return StreamingResponse(
            _relay(request, ticket, first, lambda piece: event({"text": piece}),
                   lambda result: event({"rationale": result.to_dict()})),
            media_type="text/event-stream", headers=_STREAM_HEADERS)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        question, stream = parse_chat(await read_json(request, settings.max_body_bytes))
        ticket = scheduler.submit(question, stream)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not stream:
            return JSONResponse(chat_completion(await _wait(ticket), completion_id, created))
        first = await _wait(ticket)
        name = rationalizer.name

        def final(result: Rationale) -> bytes:
            return event(chat_chunk(completion_id, created, name, {}, finish_reason(result),
                                    usage=usage(result), rationale=result.to_dict()))

        return StreamingResponse(
            _relay(request, ticket, first, lambda piece: event(chat_chunk(completion_id, created, name,
                                                                          {"content": piece})),
                   final, prefix=event(chat_chunk(completion_id, created, name,
                                                  {"role": "assistant", "content": ""}))),
            media_type="text/event-stream", headers=_STREAM_HEADERS)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        job, stream = parse_completion(await read_json(request, settings.max_body_bytes))
        ticket = scheduler.submit(job, stream)
        completion_id, created, name = f"cmpl-{uuid.uuid4().hex}", int(time.time()), rationalizer.name
        if not stream:
            return JSONResponse(completion_body(await _wait(ticket), completion_id, created, name, job.prompt))
        first = await _wait(ticket)

        def final(result: CompletionResult) -> bytes:
            last = event(completion_chunk(completion_id, created, name, "", result, job.prompt))
            return last + event(usage_chunk(completion_id, created, name, result)) if job.include_usage else last

        return StreamingResponse(
            _relay(request, ticket, first, lambda piece: event(completion_chunk(completion_id, created, name, piece)),
                   final), media_type="text/event-stream", headers=_STREAM_HEADERS)

    return app


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body; a body over ``limit`` bytes is refused (413) before it is parsed, by its
    Content-Length when it gives one, else as soon as that many bytes have come."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length must be a number of bytes, not {declared[:40]!r}")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(len(body), limit)
    if not body:
        raise ApiError(400, "the request has no body: send a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"the request body is {size:,}{'+' if size > limit else ''} bytes; this server takes at "
                         f"most {limit:,}", "request_too_large")


async def _wait(ticket: Ticket) -> Any:
    """The ticket's next item; a handler that is cancelled (the server is stopping) cancels the work."""
    try:
        return await ticket.get()
    except BaseException:
        ticket.cancel()
        raise


async def _relay(request: Request, ticket: Ticket, first: Any, piece: Callable[[str], bytes],
                 final: Callable[[Any], bytes], prefix: bytes | None = None) -> AsyncIterator[bytes]:
    """The events of a stream: ``prefix``, each text piece, the result (a :class:`Rationale`, a
    completion's), then ``[DONE]``.

    The client is checked between pieces: once it has gone, or the response is closed for any reason,
    the ticket is cancelled and the worker stops the generation before its next token.
    """
    item = first
    try:
        if prefix is not None:
            yield prefix
        while item is not END:
            yield piece(item) if isinstance(item, str) else final(item)
            if await request.is_disconnected():
                return
            item = await ticket.get()
        yield DONE
    except Exception as exc:  # the headers are sent: the error goes in the stream
        error = _api_error(exc)
        yield event(error.body())
    finally:
        if item is not END:
            ticket.cancel()


def _api_error(exc: Exception) -> ApiError:
    """The HTTP error for an exception of a handler or a model call."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServerBusy):
        return ApiError(503, str(exc), "server_busy", {"Retry-After": "1"})
    if isinstance(exc, (InputError, UserError)):
        return ApiError(400, str(exc))
    return ApiError(500, f"the model failed: {exc}" if str(exc) else "the model failed", "server_error")


def _add_error_handlers(app: FastAPI) -> None:
    def answer(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), error.status, headers=error.headers)

    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        return answer(_api_error(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return answer(ApiError(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "invalid_request_error")))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        return answer(ApiError(400, str(exc)))

    for kind in (ApiError, ServerBusy, UserError):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_error)


class ApiKeyMiddleware:
    """Refuses (401) every HTTP request but ``GET /health`` without ``Authorization: Bearer <key>``; the
    key is compared in constant time, so the time taken tells nothing about it."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self._key = key.encode("utf-8")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") != "/health" and not self._allowed(scope):
            response = JSONResponse(error_body("a valid API key is needed: send 'Authorization: Bearer <key>'",
                                               "authentication_error"), 401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: dict[str, Any]) -> bool:
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
