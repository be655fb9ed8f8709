"""A small OpenAI-compatible chat server on 127.0.0.1 for fault tests: it can fail, hang or drop.

It answers like a teacher would ("<rationale> So the answer is X."), reading X
from the request, so tests can check exactly which rows arrive.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultyTeacherServer:
    """``plan`` maps a request number (1-based) to 'ok', '500', '429', 'hang' or 'drop'; unlisted: 'ok'."""

    def __init__(self, plan: dict[int, str] | None = None, delay_s: float = 0.0, fail_questions: set[str] = frozenset(),
                 same_text: str | None = None):
        self.plan = dict(plan or {})
        self.delay_s = delay_s
        self.fail_questions = set(fail_questions)
        self.same_text = same_text
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.calls += 1
                    number = outer.calls
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    outer._handle(self, body, number)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, handler, body, number):
        action = self.plan.get(number, "ok")
        user = body["messages"][-1]["content"]
        question = re.search(r"Question: (.*)", user).group(1)
        if question in self.fail_questions:
            action = "500"
        if action == "hang":
            time.sleep(30)
            return
        if action == "drop":
            handler.connection.close()
            return
        if action in ("500", "429"):
            handler.send_response(int(action))
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"no")
            return
        time.sleep(self.delay_s)
        answer = re.search(r"Answer: (.*)", user).group(1)
        reason = self.same_text or f"The reason for {question.lower()} is clear."
        text = f"{reason} So the answer is {answer}."
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
