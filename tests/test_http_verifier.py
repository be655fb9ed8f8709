"""The OpenAI-compatible verifier against llama-cpp-python's real server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer import BackendError
from rationalizer.cli.main import cli
from rationalizer.http_client import RetryPolicy
from rationalizer.evaluation.http_verifier import OpenAIVerifier

pytestmark = pytest.mark.e2e


def test_served_verifier_reads_yes_probability(llama_server):
    v = OpenAIVerifier(llama_server, "smol")
    probs = v.probabilities([("Can a penguin fly?", "no", "Penguins are flightless birds."),
                             ("Is the sun a star?", "yes", "The sun is a star.")])
    assert all(p is not None and 0 < p < 1 for p in probs)
    assert probs == v.probabilities([("Can a penguin fly?", "no", "Penguins are flightless birds."),
                                     ("Is the sun a star?", "yes", "The sun is a star.")])


def test_eval_with_a_served_verifier_names_it(llama_server, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "question": "Can a penguin fly?", "choices": ["yes", "no"],
                                               "answer": "no", "rationale": None}])
    result = CliRunner().invoke(cli, ["eval", "--data", str(data), "--verifier", llama_server, "--verifier-model",
                                      "smol", "--simulator", "none", "--no-faithfulness", "--json", "--max-tokens", "24"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["metrics"]["plausibility"]["model"] == f"smol@{llama_server}"
    assert summary["metrics"]["plausibility"]["n"] == 1


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 twice, then a valid chat completion with log-probabilities."""

    calls = 0

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= 2:
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"choices": [{"logprobs": {"content": [{"top_logprobs": [
            {"token": "Yes", "logprob": -0.1}, {"token": " no", "logprob": -2.5}]}]}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_verifier_retries_server_errors_then_fails_clearly():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        v = OpenAIVerifier(url, "m", policy=RetryPolicy(attempts=3, timeout_s=5, backoff_s=0.01))
        (p,) = v.probabilities([("q", "a", "r")])
        import math
        assert p == pytest.approx(math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.5)))
        assert Flaky.calls == 3
        Flaky.calls = -10  # ten more failures than attempts
        with pytest.raises(BackendError, match="failed after 3 attempts .*HTTP 503"):
            v.probabilities([("q", "a", "r")])
    finally:
        server.shutdown()
