"""``rationalize serve`` against real clients on 127.0.0.1: the embedded default model (llama.cpp) served by
the CLI in a subprocess (also as the server of the remote backend), and the tiny torch bundle served
in-process to see requests batch together."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategyqa" / "dev.jsonl"
KEY = "s3cret-key"
QUESTIONS = ["Can a penguin fly?", "Is ice cold?", "Do fish live in water?", "Is the sun a star?",
             "Can dogs bark?", "Is fire hot?", "Do cows eat grass?", "Is the moon made of cheese?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return _call(urllib.request.Request(base + path, headers=headers or {}))


def _post(base: str, path: str, body: Any, headers: dict[str, str] | None = None,
          timeout: float = 60) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    return _call(request, timeout)


def _call(request: urllib.request.Request, timeout: float = 60) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextmanager
def _open_stream(base: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Iterator[Any]:
    """A streaming POST: yields (status, an iterator of the SSE ``data`` payloads, the connection)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()

    def events() -> Iterator[Any]:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: "):
                payload = line[len("data: "):]
                yield payload if payload == "[DONE]" else json.loads(payload)

    try:
        yield response.status, events(), conn
    finally:
        conn.close()


def _stream(base: str, path: str, body: Any) -> list[Any]:
    with _open_stream(base, path, body) as (status, events, _):
        assert status == 200
        return list(events)


def _start(port: int, *flags: str, key: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RATIONALIZER_API_KEY"}
    if key is not None:
        env["RATIONALIZER_API_KEY"] = key
    proc = subprocess.Popen([sys.executable, "-m", "rationalizer.cli.main", "serve", "--port", str(port), *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"rationalize serve did not start: {proc.communicate()[1][-2000:]}")
            time.sleep(0.2)


@contextmanager
def _server(*flags: str, key: str | None = None) -> Iterator[str]:
    port = _free_port()
    proc = _start(port, *flags, key=key)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The default model served by ``rationalize serve`` with a 20 kB body limit."""
    with _server("--max-queue", "16", "--max-body-bytes", "20000") as base:
        yield base


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    """The default model behind an API key, admitting one request at a time."""
    with _server("--max-queue", "1", key=KEY) as base:
        yield base


def _wait_idle(base: str, headers: dict[str, str] | None = None, within: float = 10) -> dict[str, Any]:
    deadline = time.time() + within
    while True:
        _, health = _get(base, "/health", headers)
        if health["in_flight"] == 0 or time.time() > deadline:
            return health
        time.sleep(0.05)


def test_sequential_requests_answer_as_the_sdk_does(server, default_model):
    for question, choices in [("Can a penguin fly?", ["yes", "no"]), ("Is ice cold?", None)]:
        status, body = _post(server, "/v1/rationalize", {"question": question, "choices": choices, "max_tokens": 16})
        assert status == 200
        local = default_model.rationalize(question, choices, max_new_tokens=16)
        assert body["text"] == local.text and body["answer"] == local.answer
        assert body["question"] == question and body["choices"] == choices and body["model"] == default_model.name
        assert 0 < body["tokens_generated"] <= 16
    status, body = _post(server, "/v1/rationalize", {"question": "Can a penguin fly?", "choices": ["yes", "no"],
                                                     "max_tokens": 8, "votes": 2, "seed": 5})
    assert status == 200 and sum(body["votes"].values()) <= 2 and body["tokens_generated"] > 8


def test_eight_concurrent_clients_each_get_their_own_answer(server, default_model):
    def ask(question: str) -> tuple[int, Any]:
        return _post(server, "/v1/rationalize", {"question": question, "max_tokens": 12})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, QUESTIONS))
    for question, (status, body) in zip(QUESTIONS, answers):
        assert status == 200, body
        assert body["question"] == question
        assert body["text"] == default_model.rationalize(question, max_new_tokens=12).text
    assert _wait_idle(server)["in_flight"] == 0


def test_streaming_sends_the_pieces_then_the_rationale(server):
    events = _stream(server, "/v1/rationalize", {"question": "Can a penguin fly?", "max_tokens": 16, "stream": True})
    assert events[-1] == "[DONE]"
    pieces = [e["text"] for e in events[:-2]]
    final = events[-2]["rationale"]
    assert len(pieces) > 1 and "".join(pieces) == final["text"]
    _, whole = _post(server, "/v1/rationalize", {"question": "Can a penguin fly?", "max_tokens": 16})
    assert final["text"] == whole["text"] and final["tokens_generated"] == whole["tokens_generated"]


def test_a_client_that_disconnects_mid_stream_stops_its_generation(server):
    _, before = _get(server, "/health")
    # sampled at temperature 5 the model rarely ends by itself: 1500 tokens would take far longer than the wait
    body = {"question": "Can a penguin fly?", "max_tokens": 1500, "temperature": 5, "seed": 1, "stream": True}
    with _open_stream(server, "/v1/rationalize", body) as (status, events, conn):
        assert status == 200
        assert "text" in next(events) and "text" in next(events)
        conn.sock.shutdown(socket.SHUT_RDWR)
    health = _wait_idle(server, within=8)
    assert health["in_flight"] == 0 and health["cancelled"] == before["cancelled"] + 1
    start = time.time()
    status, _ = _post(server, "/v1/rationalize", {"question": "Is ice cold?", "max_tokens": 8})
    assert status == 200 and time.time() - start < 8


@pytest.mark.parametrize("body, status, says", [
    ({"question": ""}, 400, "empty"),
    ({"question": "why? " * 1000}, 400, "at most 4000"),
    ({"question": "Is ice cold?", "quality": "nonsense"}, 400, "nonsense"),
    ({"question": "Is ice cold?", "quality": {"diversity": 99}}, 400, "diversity"),
    ({"question": "Is ice cold?", "max_tokens": 0}, 400, "max_new_tokens"),
    ({"question": "Is ice cold?", "temperature": "hot"}, 400, "temperature"),
    ({"question": "Is ice cold?", "choices": "yes|no"}, 400, "choices"),
    ({"question": "Is ice cold?", "stream": True, "votes": 3}, 400, "votes"),
    ({"question": "Is ice cold?", "max_token": 5}, 400, "max_token"),
    ({"choices": ["a"]}, 400, "question"),
    (["Is ice cold?"], 400, "object"),
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "no body"),
    (json.dumps({"question": "x" * 30_000}).encode(), 413, "at most 20,000"),
])
def test_bad_requests_get_a_json_error_naming_the_problem(server, body, status, says):
    got, error = _post(server, "/v1/rationalize", body)
    assert got == status, error
    assert says in error["error"]["message"] and error["error"]["type"]


def test_a_large_body_without_a_length_is_refused_while_it_comes(server):
    conn = http.client.HTTPConnection("127.0.0.1", int(server.rsplit(":", 1)[1]), timeout=30)
    chunks = [b'{"question": "', *([b"x" * 5000] * 6), b'"}']
    conn.request("POST", "/v1/rationalize", body=iter(chunks), encode_chunked=True,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 413 and "at most 20,000" in json.loads(response.read())["error"]["message"]
    conn.close()


def test_unknown_routes_and_methods_answer_json(server):
    assert _get(server, "/v1/nothing")[0] == 404
    status, error = _get(server, "/v1/rationalize")
    assert status == 405 and error["error"]["type"] == "method_not_allowed"


def test_chat_completions_answers_in_openai_shape(server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is fire cold?"},
                {"role": "assistant", "content": "No."}, {"role": "user", "content": "Can a penguin fly?"}]
    status, body = _post(server, "/v1/chat/completions", {"model": "anything", "messages": messages,
                                                          "max_tokens": 16, "choices": ["yes", "no"]})
    assert status == 200 and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["content"] == body["rationale"]["text"]
    assert body["rationale"]["question"] == "Can a penguin fly?" and body["rationale"]["choices"] == ["yes", "no"]
    assert body["usage"]["completion_tokens"] == body["rationale"]["tokens_generated"]
    status, error = _post(server, "/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}]})
    assert status == 400 and "user" in error["error"]["message"]


def test_chat_completions_streams_openai_chunks(server):
    body = {"model": "x", "messages": [{"role": "user", "content": [{"type": "text", "text": "Can a penguin fly?"}]}],
            "max_tokens": 16, "stream": True}
    events = _stream(server, "/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert text == chunks[-1]["rationale"]["text"] and text


def test_models_lists_the_bundle(server, default_model):
    status, body = _get(server, "/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == [default_model.name]
    assert body["data"][0]["quality_codes"] == default_model.quality_codes()


def test_the_api_key_is_needed_everywhere_but_health(keyed_server):
    question = {"question": "Is ice cold?", "max_tokens": 4}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        status, error = _post(keyed_server, "/v1/rationalize", question, headers)
        assert status == 401 and error["error"]["type"] == "authentication_error"
    assert _get(keyed_server, "/v1/models")[0] == 401
    assert _post(keyed_server, "/v1/completions", {"prompt": "Hi", "max_tokens": 1})[0] == 401
    assert _get(keyed_server, "/health")[0] == 200
    auth = {"Authorization": f"Bearer {KEY}"}
    assert _post(keyed_server, "/v1/rationalize", question, auth)[0] == 200
    assert _get(keyed_server, "/v1/models", auth)[0] == 200


def test_a_full_queue_answers_503(keyed_server):
    auth = {"Authorization": f"Bearer {KEY}"}
    long = {"question": "Can a penguin fly?", "max_tokens": 1500, "temperature": 5, "seed": 2, "stream": True}
    with _open_stream(keyed_server, "/v1/rationalize", long, auth) as (status, events, _):
        assert status == 200 and "text" in next(events)
        status, error = _post(keyed_server, "/v1/rationalize", {"question": "Is ice cold?"}, auth)
        assert status == 503 and error["error"]["type"] == "server_busy"
    assert _wait_idle(keyed_server, auth)["in_flight"] == 0
    assert _post(keyed_server, "/v1/rationalize", {"question": "Is ice cold?", "max_tokens": 4}, auth)[0] == 200


def test_sigterm_lets_the_request_in_flight_finish():
    port = _free_port()
    proc = _start(port)
    base = f"http://127.0.0.1:{port}"
    try:
        result: list[Any] = []
        body = {"question": "Can a penguin fly?", "max_tokens": 60, "temperature": 5, "seed": 4}
        thread = threading.Thread(target=lambda: result.append(_post(base, "/v1/rationalize", body)))
        thread.start()
        deadline = time.time() + 10
        while _get(base, "/health")[1]["in_flight"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert result and result[0][0] == 200 and result[0][1]["tokens_generated"] > 0
        # uvicorn re-raises the signal once it has shut down, so the exit tells the signal that stopped it
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_completions_continue_the_prompt_as_given(server, default_model):
    question, choices = "Can a penguin fly?", ["yes", "no"]
    local = default_model.rationalize(question, choices, max_new_tokens=12)
    request = {"model": default_model.name, "prompt": str(default_model.prompt(question, choices)), "max_tokens": 12,
               "temperature": 0, "stop": default_model.manifest.prompt.stop}
    status, body = _post(server, "/v1/completions", request)
    assert status == 200 and body["object"] == "text_completion", body
    assert body["choices"][0]["text"] == local.text and body["choices"][0]["logprobs"] is None
    assert body["usage"]["prompt_tokens"] == local.prompt_tokens
    assert body["usage"]["completion_tokens"] == local.tokens_generated
    events = _stream(server, "/v1/completions", {**request, "stream": True, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"] == body["usage"]
    chunks = events[:-2]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks) and len(chunks) > 2
    assert "".join(c["choices"][0]["text"] for c in chunks) == local.text
    assert chunks[-1]["choices"][0]["finish_reason"] == body["choices"][0]["finish_reason"]


def test_completions_force_a_token_and_give_its_log_probability(server, default_model):
    from rationalizer.prompting import answer_context

    marker = default_model.manifest.parser.marker
    context = answer_context(default_model.prompt("Is ice cold?", ["yes", "no"]), "", marker)
    token = default_model.backend._encoder.encode(" no", add_special=False)
    assert len(token) == 1
    want = default_model.backend.loglikelihoods([(context, " no")])[0][0]
    status, body = _post(server, "/v1/completions", {"prompt": str(context), "max_tokens": 1, "logprobs": 1,
                                                     "logit_bias": {str(token[0]): 100}})
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["text"] == " no" and choice["logprobs"]["tokens"] == [" no"]
    assert choice["logprobs"]["text_offset"] == [len(context)]
    assert abs(choice["logprobs"]["token_logprobs"][0] - want) < 1e-6


@pytest.mark.parametrize("body, says", [
    ({"prompt": ""}, "prompt"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "Hi", "echo": True, "logprobs": 1}, "echo"),
    ({"prompt": "Hi", "logit_bias": {"5": 3}}, "logit_bias"),
    ({"prompt": "Hi", "logit_bias": {"5": 100}, "max_tokens": 4}, "max_tokens 1"),
    ({"prompt": "Hi", "logit_bias": {"999999999": 100}, "max_tokens": 1}, "vocabulary"),
    ({"prompt": "Hi", "top_k": 40}, "top_k"),
    ({"prompt": "Hi", "max_tokens": 0}, "max_new_tokens"),
    ({"prompt": "Hi", "temperature": "hot"}, "temperature"),
    ({"prompt": "Hi", "n": 2}, "n must be 1"),
    ({"prompt": "Hi", "stop": [1]}, "stop"),
])
def test_bad_completions_get_a_json_error(server, body, says):
    status, error = _post(server, "/v1/completions", body)
    assert status == 400 and says in error["error"]["message"], error


def test_the_remote_backend_on_a_served_bundle_answers_as_the_local_one(server, default_model):
    from rationalizer import Rationalizer

    if not DEV.is_file():
        pytest.skip(f"{DEV} is not here")
    with DEV.open(encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(4), f)]
    remote = Rationalizer.load(None, backend="http", endpoint=f"{server}/v1", model=default_model.name)
    try:
        for row in rows:
            local = default_model.rationalize(row["question"], row["choices"], max_new_tokens=24)
            got = remote.rationalize(row["question"], row["choices"], max_new_tokens=24)
            assert (got.answer, got.text, got.answer_scored) == (local.answer, local.text, local.answer_scored)
            want = default_model.choice_logprobs(row["question"], row["choices"], local.rationale)
            scores = remote.choice_logprobs(row["question"], row["choices"], local.rationale)
            assert scores.keys() == want.keys()
            assert all(abs(scores[c] - want[c]) <= 1e-4 for c in want), (scores, want)
        assert remote._backend._scoring == "forced"  # the server refuses echo: each choice token is forced
    finally:
        remote.close()


def test_codes_measures_on_a_served_bundle(server, tmp_path):
    from click.testing import CliRunner

    from rationalizer.cli.main import cli

    if not DEV.is_file():
        pytest.skip(f"{DEV} is not here")
    data = tmp_path / "one.jsonl"
    data.write_text(DEV.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    common = ["codes", "default", "--data", str(data), "--limit", "1", "--max-tokens", "6", "--simulator", "none",
              "--verifier", "none"]
    refused = CliRunner().invoke(cli, [*common, "--backend", "http"])
    assert refused.exit_code == 2 and "--endpoint" in refused.output
    _, before = _get(server, "/health")
    result = CliRunner().invoke(cli, [*common, "--backend", "http", "--endpoint", f"{server}/v1", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "| accuracy |" in result.output and "| diversity |" in result.output
    assert _get(server, "/health")[1]["served"] > before["served"]  # the generations ran on the server


def test_requests_batch_together_on_a_batching_backend(tiny_model):
    import uvicorn

    from rationalizer.serving import ServeSettings, create_app
    from rationalizer.serving.server import listen

    assert tiny_model._backend.max_batch_size > 1
    settings = ServeSettings(port=_free_port(), batch_window_ms=300)
    app = create_app(tiny_model, settings)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    sock = listen(settings.host, settings.port)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.time() + 30
        while not uv.started and time.time() < deadline:
            time.sleep(0.05)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda q: _post(base, "/v1/rationalize", {"question": q, "max_tokens": 6}),
                                    QUESTIONS[:4]))
        assert [(status, body["question"]) for status, body in answers] == [(200, q) for q in QUESTIONS[:4]]
        health = _get(base, "/health")[1]
        assert health["batches"] >= 1 and health["largest_batch"] >= 2 and health["served"] == 4
    finally:
        uv.should_exit = True
        thread.join(30)


def test_only_requests_that_generate_alike_share_a_batch():
    from rationalizer.serving.scheduler import Question

    greedy = Question("Is ice cold?", max_new_tokens=8)
    assert greedy.batch_key() == Question("Is fire hot?", ["yes", "no"], max_new_tokens=8).batch_key()
    assert greedy.batch_key() != Question("Is ice cold?", max_new_tokens=9).batch_key()
    assert greedy.batch_key() != Question("Is ice cold?", quality={"diversity": 2}, max_new_tokens=8).batch_key()
    # a batch seeds each row differently, so a seeded sampled request (reproducible alone) runs alone
    assert Question("Is ice cold?", temperature=0.7, seed=3).batch_key() is None
    assert Question("Is ice cold?", votes=3).batch_key() is None


def test_the_server_stays_out_of_light_imports():
    code = "import sys, rationalizer, rationalizer.cli.main; print([m for m in ('fastapi', 'uvicorn') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
