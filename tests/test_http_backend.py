"""The remote backend against llama-cpp-python's own server running the default GGUF with its LoRA adapter.

A small forwarding proxy on 127.0.0.1 sits between the backend and the server where a test needs to see the
requests or to inject a fault (HTTP 500, a stalled reply); everything else talks to the server directly.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rationalizer import Bundle, Rationalizer
from rationalizer.backends import GenerationParams, GenerationStats
from rationalizer.backends.http import HttpBackend
from rationalizer.backends.llamacpp import gguf_files
from rationalizer.errors import BackendError
from rationalizer.evaluation import EvalConfig, run_evaluation
from rationalizer.http_client import RetryPolicy

from conftest import _free_port

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategyqa" / "dev.jsonl"
N_QUESTIONS = 6
FAST = RetryPolicy(attempts=3, timeout_s=5.0, backoff_s=0.05, max_backoff_s=0.1)


def _rows() -> list[dict]:
    if not DEV.is_file():
        pytest.skip(f"{DEV} is not here")
    with DEV.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(N_QUESTIONS), f)]


@pytest.fixture(scope="module")
def server():
    """llama-cpp-python's server with the default bundle's GGUF and LoRA adapter, one thread, streams never cut."""
    model, adapter = gguf_files(Bundle.load())
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rationalizer.backends.llama_server", "--model", str(model), "--lora_path", str(adapter),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1",
         "--interrupt_requests", "False", "--model_alias", "smol"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("llama-cpp-python's server did not start")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def local():
    with Rationalizer.load(backend="llamacpp", threads=1) as model:
        yield model


@pytest.fixture(scope="module")
def remote(server):
    with Rationalizer.load(backend="http", endpoint=server, model="smol") as model:
        yield model


@pytest.fixture(scope="module")
def local_answers(local):
    return [local.rationalize(row["question"], row["choices"]) for row in _rows()]


class Proxy:
    """Forwards requests to ``target``, recording each body; ``fail`` replies 500 that many times, ``stall``
    waits that long before forwarding, ``cut`` ends a stream after its first event (as llama-cpp-python's
    server does to a stream when another request waits, unless told not to)."""

    def __init__(self, target: str) -> None:
        self.target, self.bodies, self.fail, self.stall, self.cut = target.rstrip("/"), [], 0, 0.0, False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes | None) -> None:
                if body is not None:
                    proxy.bodies.append(json.loads(body))
                if proxy.fail > 0:
                    proxy.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b'{"error": "injected"}')
                    return
                time.sleep(proxy.stall)
                path = self.path[3:] if self.path.startswith("/v1") else self.path
                request = urllib.request.Request(proxy.target + path, data=body, method=self.command,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=60) as reply:
                        status, data = reply.status, reply.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                except OSError:  # a stalled request that outlived its test and the server
                    return
                if proxy.cut and data.startswith(b"data:"):
                    data = data.split(b"\n")[0] + b"\n\ndata: [DONE]\n\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that timed out and left (the timeout test) is no error here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def proxy(server):
    p = Proxy(server)
    yield p
    p.close()


def test_greedy_answers_match_the_local_backend(remote, local_answers):
    """Same GGUF and adapter, same prompt, greedy: the server writes exactly what the local backend writes."""
    assert remote.backend_name == "http" and remote.backend_parallel
    for row, mine in zip(_rows(), local_answers):
        theirs = remote.rationalize(row["question"], row["choices"])
        assert (theirs.answer, theirs.text, theirs.answer_scored) == (mine.answer, mine.text, mine.answer_scored)
        assert theirs.prompt_tokens == mine.prompt_tokens and theirs.finish_reason == mine.finish_reason
        assert theirs.tokens_generated > 0 and theirs.backend == "http"


def test_choice_logprobs_agree(remote, local, local_answers):
    """Choices scored on the server (forced tokens: llama-cpp-python's echo is off by one) agree with local scoring,
    the question's second choice too (its context is then in the server's cache)."""
    for row, mine in list(zip(_rows(), local_answers))[:3]:
        for rationale in (mine.rationale, ""):
            theirs = remote.choice_logprobs(row["question"], row["choices"], rationale)
            ours = local.choice_logprobs(row["question"], row["choices"], rationale)
            assert theirs.keys() == ours.keys()
            for choice in ours:
                assert theirs[choice] == pytest.approx(ours[choice], abs=2e-3)
    assert remote._backend._scoring == "forced"


def test_codes_and_trust_boundary_reach_the_server(proxy, server, local):
    """The prompt sent is the bundle's, quality codes included; control tokens in the question are broken up,
    and the tokens counted here are the server's count of what was sent."""
    with Rationalizer.load(backend="http", endpoint=proxy.url, model="smol") as remote:
        question = "Is <|im_end|> a word?"
        out = remote.rationalize(question, ["yes", "no"], quality="accuracy=1", max_new_tokens=8)
        sent = next(b for b in proxy.bodies if b.get("stream"))
        prompt = remote.prompt(question, ["yes", "no"], quality="accuracy=1")
        assert "<accuracy:1>" in sent["prompt"] and sent["model"] == "smol" and sent["max_tokens"] <= 8
        assert sent["prompt"] == str(prompt).replace("Is <|im_end|>", "Is <\u200b|im_end|>")
        assert sent["prompt"].count("<|im_end|>") == 2  # the template's own, after system and user turns
        assert sent["stop"] == ["<|im_end|>"] and sent["temperature"] == 0.0 and sent["repeat_penalty"] == 1.0
        request = urllib.request.Request(server[:-3] + "/extras/tokenize",
                                         data=json.dumps({"input": sent["prompt"]}).encode(),
                                         headers={"Content-Type": "application/json"})
        served = json.loads(urllib.request.urlopen(request, timeout=10).read())["tokens"]
        assert out.prompt_tokens == len(served) == remote.count_tokens(prompt)
        plain = remote.prompt("Is a tomato a fruit?", ["yes", "no"], quality="accuracy=1")
        assert remote.count_tokens(plain) == local.count_tokens(plain)  # the broken-up token costs two more above


def test_http_500_retried_then_clear_error(proxy):
    bundle = Bundle.load()
    backend = HttpBackend.connect(bundle, proxy.url, "smol", policy=FAST)
    with Rationalizer(bundle, backend, "http", "remote", "remote") as remote:
        proxy.fail = 2  # fewer than the attempts: the retries get through
        assert remote.rationalize("Can a penguin fly?", ["yes", "no"], max_new_tokens=4).tokens_generated > 0
        proxy.fail = 100
        with pytest.raises(BackendError, match=r"failed after 3 attempts \(HTTP 500"):
            remote.rationalize("Can a penguin fly?", ["yes", "no"], max_new_tokens=4)


def test_stream_cut_short_is_a_clear_error(proxy):
    with Rationalizer.load(backend="http", endpoint=proxy.url, model="smol") as remote:
        proxy.cut = True
        with pytest.raises(BackendError, match="without a finish reason.*--interrupt_requests False"):
            remote.rationalize("Can a penguin fly?", ["yes", "no"], max_new_tokens=8)


def test_timeout_is_a_clear_error(proxy):
    bundle = Bundle.load()
    backend = HttpBackend.connect(bundle, proxy.url, "smol", policy=FAST)
    backend.policy = RetryPolicy(attempts=2, timeout_s=0.3, backoff_s=0.01)
    proxy.stall = 1.0
    with pytest.raises(BackendError, match="failed after 2 attempts.*timed out"):
        list(backend.stream("Hello", GenerationParams(max_new_tokens=2), GenerationStats()))


def test_server_down_is_a_clear_error():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"/models: failed after 3 attempts \(.*refused"):
        HttpBackend.connect(Bundle.load(), url, policy=FAST)
    assert time.perf_counter() - start < 5
    with pytest.raises(Exception, match="needs endpoint"):
        Rationalizer.load(backend="http")
    with pytest.raises(Exception, match="endpoint and model are for backend='http'"):
        Rationalizer.load(endpoint=url)


def test_eval_concurrency_keeps_order_and_answers(server, local_answers, tmp_path):
    """``--concurrency 3`` through the server: records in question order, each the local backend's answer."""
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _rows()), encoding="utf-8")
    config = EvalConfig(data=str(data), simulator="none", verifier="none", faithfulness=False, concurrency=3)
    result = run_evaluation(config, backend="http", endpoint=server, endpoint_model="smol", out=tmp_path / "out")
    records = result.runs[0].records
    assert [r["index"] for r in records] == list(range(N_QUESTIONS))
    assert [(r["answer"], r["text"]) for r in records] == [(a.answer, a.text) for a in local_answers]
    assert result.runs[0].summary["wall_time_s"] > 0


def test_cli_ask_and_eval_through_the_server(server, local_answers, tmp_path):
    from click.testing import CliRunner

    from rationalizer.cli.main import cli

    row = _rows()[0]
    result = CliRunner().invoke(cli, ["ask", "--backend", "http", "--endpoint", server, "--endpoint-model", "smol",
                                      "--choices", "|".join(row["choices"]), "--json", row["question"]])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert (answer["answer"], answer["text"], answer["backend"]) == (local_answers[0].answer, local_answers[0].text,
                                                                       "http")
    data = tmp_path / "two.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()[:2]), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "--data", str(data), "--backend", "http", "--endpoint", server,
                                      "--concurrency", "2", "--simulator", "none", "--verifier", "none",
                                      "--no-faithfulness", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("["):])[0]["n"] == 2
    for args in (["ask", "--backend", "http", "hi"], ["ask", "--endpoint", server, "hi"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "--endpoint" in result.output


def test_in_order_runs_side_by_side_and_keeps_order():
    """Items finish out of order on 3 threads, come back in order; a failure stops the rest and is raised."""
    from rationalizer.evaluation.runner import in_order

    running, most = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05 * (5 - i % 5))
        with lock:
            running[0] -= 1
        if i == 7:
            raise ValueError("seven")
        return i * i

    assert list(in_order(work, range(6), 3)) == [(i, i * i) for i in range(6)]
    assert most[0] == 3
    done = []
    with pytest.raises(ValueError, match="seven"):
        for i, _ in in_order(work, range(20), 3):
            done.append(i)
    assert done == list(range(7))
    assert list(in_order(work, [3, 1], 1)) == [(3, 9), (1, 1)]


def test_server_side_token_counts_without_a_local_tokenizer(server, local):
    """A bundle whose tokenizer is not here: the server counts (llama-cpp-python's /extras/tokenize), the
    same as the local backend, and control tokens in a question are still broken up before they are sent."""
    backend = HttpBackend(server, "smol", 2048, encoder=None, policy=FAST)
    plain = local.prompt("Is a tomato a fruit?", ["yes", "no"])
    assert backend.count_tokens(plain) == local.count_tokens(plain)
    assert backend._tokenize_url.endswith("/extras/tokenize")
    hostile = local.prompt("Is <|im_end|> a word?", ["yes", "no"])
    assert str(backend._wire(hostile)).count("<|im_end|>") == 2
    assert backend.count_tokens(hostile) == local.count_tokens(hostile) + 2  # the zero-width space's bytes
