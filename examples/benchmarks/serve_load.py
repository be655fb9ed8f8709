"""Load on ``rationalize serve``: requests/s and p50/p99 latency at 1, 4 and 16 clients, against llama.cpp's server.

Each server runs as a subprocess on a free 127.0.0.1 port, one after another, with the same CPU threads:

- ``serve_gguf``: ``rationalize serve`` on the embedded default model (GGUF + LoRA adapter, llama.cpp
  backend: requests take turns);
- ``serve_onnx``: ``rationalize serve`` on an ONNX export (``--onnx-bundle``: requests batch together);
- ``llama_cpp_server``: llama-cpp-python's own server (``python -m rationalizer.backends.llama_server``, the
  entry point that keeps it alive on an AMX CPU) on the same GGUF and adapter, asked on ``/v1/completions``
  for the prompt text the runtime builds (``Rationalizer.prompt``), the same ``max_tokens`` and stop strings,
  greedy.

Every client is a thread with its own keep-alive connection sending one request after another; a level's
requests/s is its requests over the wall time from the first send to the last answer. The same questions
go to every server, so the greedy texts of ``serve_gguf`` and ``llama_cpp_server`` should agree.

The soak (``--soak-seconds``) then runs ``--soak-clients`` clients for that long against ``rationalize serve``
(the default model) with a small ``--soak-max-queue``, mixing plain, streamed and chat requests, and checks
that every response is 200 or the documented 503, that every request sent got a response, that the server's
own counters agree, and reports the server's RSS before, during and after. It exits 1 when a check fails.

    python examples/benchmarks/serve_load.py [--data ../shared/data/strategyqa/dev.jsonl]
        [--onnx-bundle exports/onnx-int8] [--levels 1,4,16] [--requests-per-level 32] [--max-tokens 48]
        [--threads N] [--soak-seconds 120 --soak-clients 16 --soak-max-queue 4] [--out serve_load.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "strategyqa" / "dev.jsonl"
TIMEOUT = httpx.Timeout(600.0, connect=10.0)  # 16 requests taking turns wait for the 15 before them


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(command: list[str], ready_url: str, startup_s: float = 300) -> Iterator[subprocess.Popen]:
    """``command`` as a subprocess, once ``ready_url`` answers; terminated (gracefully) afterwards. Its stderr
    goes to a file, not a pipe nobody reads (a full pipe would stall the server), and is shown if it dies."""
    env = {k: v for k, v in os.environ.items() if k != "RATIONALIZER_API_KEY"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            deadline = time.monotonic() + startup_s
            while True:
                try:
                    httpx.get(ready_url, timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        tail = log.read().decode(errors="replace")[-2000:]
                        raise SystemExit(f"{' '.join(command[:4])}... did not start:\n{tail}")
                    time.sleep(0.3)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve_command(bundle: str | None, port: int, threads: int, max_queue: int) -> list[str]:
    """``rationalize --quiet serve [BUNDLE]`` on ``port`` (no API key: the key is removed from its environment)."""
    return [sys.executable, "-m", "rationalizer.cli.main", "--quiet", "serve", *([bundle] if bundle else []),
            "--port", str(port), "--threads", str(threads), "--max-queue", str(max_queue)]


def llama_server_command(port: int, threads: int, context: int) -> list[str]:
    """llama-cpp-python's server over the default bundle's GGUF and LoRA adapter (what the runtime loads)."""
    from rationalizer import Bundle
    from rationalizer.backends.llamacpp import gguf_files

    model, adapter = gguf_files(Bundle.load())
    return [sys.executable, "-m", "rationalizer.backends.llama_server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(context), "--n_threads", str(threads), "--n_threads_batch",
            str(threads), "--interrupt_requests", "False", "--model_alias", "default",
            *(["--lora_path", str(adapter)] if adapter else [])]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: a latency some request really had (no interpolation between two)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def load_level(url: str, bodies: list[dict[str, Any]], clients: int, requests: int,
               read: Callable[[dict[str, Any]], tuple[str, int, bool]]) -> dict[str, Any]:
    """``requests`` POSTs (``bodies`` in turn) from ``clients`` threads; requests/s, latencies, statuses.
    ``read`` turns a 200 body into (text, tokens generated, whether the answer was found by choice scoring)."""
    counter, lock = itertools.count(), threading.Lock()
    results: list[dict[str, Any]] = []
    start = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(timeout=TIMEOUT) as http:
            start.wait()
            while True:
                with lock:
                    i = next(counter)
                if i >= requests:
                    return
                sent = time.perf_counter()
                try:
                    response = http.post(url, json=bodies[i % len(bodies)])
                    status, body = response.status_code, response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    status, body = type(exc).__name__, None
                took = time.perf_counter() - sent
                text, tokens, scored = read(body) if status == 200 else ("", 0, False)
                with lock:
                    results.append({"i": i, "status": status, "s": took, "text": text, "tokens": tokens,
                                    "scored": scored})

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ok = [r for r in results if r["status"] == 200]
    latencies = [r["s"] for r in ok] or [float("nan")]
    return {
        "clients": clients, "requests": requests, "wall_s": round(wall, 2),
        "requests_per_s": round(len(ok) / wall, 3),
        "p50_s": round(percentile(latencies, 50), 3), "p99_s": round(percentile(latencies, 99), 3),
        "mean_tokens": round(statistics.mean(r["tokens"] for r in ok), 1) if ok else 0,
        "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1),
        "answers_by_choice_scoring": sum(r["scored"] for r in ok),
        "statuses": dict(Counter(str(r["status"]) for r in results)),
        "_texts": {r["i"] % len(bodies): r["text"] for r in ok},
    }


def run_row(name: str, url: str, bodies: list[dict[str, Any]], levels: list[int], requests: int,
            read: Callable[[dict[str, Any]], tuple[str, int, bool]]) -> dict[str, Any]:
    """Every level against one server, after one warm-up request that is not counted."""
    httpx.post(url, json=bodies[0], timeout=TIMEOUT).raise_for_status()
    out = []
    for clients in levels:
        print(f"{name}: {clients} client(s)...", file=sys.stderr, flush=True)
        out.append(load_level(url, bodies, clients, requests, read))
    return {"levels": out}


def read_rationale(body: dict[str, Any]) -> tuple[str, int, bool]:
    """(text, tokens, scored) of a ``Rationale`` from ``/v1/rationalize``."""
    return body["text"], body["tokens_generated"], bool(body.get("answer_scored"))


def read_completion(body: dict[str, Any]) -> tuple[str, int, bool]:
    """(text, tokens, False) of a ``text_completion`` from llama.cpp's ``/v1/completions``."""
    return body["choices"][0]["text"], int((body.get("usage") or {}).get("completion_tokens") or 0), False


def same_texts(a: dict[int, str], b: dict[int, str]) -> str:
    """How many of the questions both runs answered got the same text: "k/n"."""
    common = set(a) & set(b)
    return f"{sum(a[i] == b[i] for i in common)}/{len(common)}"


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (psutil where installed, else /proc/PID/status VmRSS)."""
    try:
        import psutil

        return round(psutil.Process(pid).memory_info().rss / 1e6, 1)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) * 1024 / 1e6, 1)
        raise


def soak(base: str, pid: int, items: list[dict[str, Any]], seconds: float, clients: int, max_tokens: int,
         backoff_s: float) -> dict[str, Any]:
    """``clients`` threads sending plain, streamed and chat requests in turn for ``seconds``; every response
    counted by status. A client told 503 waits ``backoff_s`` before its next request. The RSS before is
    taken after one request of each kind, so that it holds what the first requests allocate for good."""
    with httpx.Client(timeout=TIMEOUT) as http:
        for kind in ("plain", "stream", "chat"):
            status, complete = _soak_request(http, base, kind, items[0], max_tokens)
            if status != 200 or not complete:
                raise SystemExit(f"soak warm-up: a {kind} request got HTTP {status} (complete: {complete})")
    before = httpx.get(f"{base}/health").json()
    rss_before = rss_mb(pid)
    rss_samples: list[list[float]] = []
    deadline = time.monotonic() + seconds
    tallies: list[dict[str, Counter]] = []

    def client(c: int) -> None:
        tally = {"sent": Counter(), "received": Counter(), "status": Counter(), "failure": Counter()}
        tallies.append(tally)
        with httpx.Client(timeout=TIMEOUT) as http:
            for n in itertools.count(c):
                if time.monotonic() >= deadline:
                    return
                item, kind = items[n % len(items)], ("plain", "stream", "chat")[n % 3]
                tally["sent"][kind] += 1
                try:
                    status, complete = _soak_request(http, base, kind, item, max_tokens)
                except httpx.HTTPError as exc:
                    tally["failure"][type(exc).__name__] += 1
                    continue
                tally["received"][kind] += 1
                tally["status"][str(status)] += 1
                if status == 200 and not complete:
                    tally["failure"]["incomplete_200"] += 1
                if status == 503:
                    time.sleep(backoff_s)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss_samples.append([round(time.monotonic() - began, 1), rss_mb(pid)])
        next(t for t in threads if t.is_alive()).join(timeout=max(2.0, seconds / 20))
    wall = time.monotonic() - began  # past ``seconds`` by the requests in flight at the deadline
    after = httpx.get(f"{base}/health").json()
    total = {key: sum((t[key] for t in tallies), Counter()) for key in ("sent", "received", "status", "failure")}
    sent, received = sum(total["sent"].values()), sum(total["received"].values())
    served, refused = after["served"] - before["served"], after["refused"] - before["refused"]
    checks = {
        "only_200_and_503": set(total["status"]) <= {"200", "503"},
        "no_request_lost": sent == received and not total["failure"],
        "server_counts_agree": served == total["status"]["200"] and refused == total["status"]["503"]
                               and after["in_flight"] == 0,
    }
    return {
        "seconds": seconds, "wall_s": round(wall, 1), "clients": clients, "max_tokens": max_tokens,
        "sent": sent, "received": received, "by_kind": dict(total["sent"]), "statuses": dict(total["status"]),
        "failures": dict(total["failure"]), "server": {"served": served, "refused": refused,
                                                       "cancelled": after["cancelled"] - before["cancelled"],
                                                       "in_flight_after": after["in_flight"]},
        "rss_mb": {"before": rss_before, "after": rss_mb(pid),
                   "peak_during": max((mb for _, mb in rss_samples), default=rss_before),
                   "samples_s_mb": rss_samples},
        "checks": checks, "ok": all(checks.values()),
    }


def _soak_request(http: httpx.Client, base: str, kind: str, item: dict[str, Any], max_tokens: int) -> tuple[int, bool]:
    """(status, whether a 200 answer was whole: a Rationale, or a stream that ended with [DONE] and no error)."""
    if kind == "chat":
        body = {"model": "default", "messages": [{"role": "user", "content": item["question"]}],
                "choices": item["choices"], "max_tokens": max_tokens}
        response = http.post(f"{base}/v1/chat/completions", json=body)
        return response.status_code, response.status_code != 200 or "rationale" in response.json()
    if kind == "plain":
        response = http.post(f"{base}/v1/rationalize", json={**item, "max_tokens": max_tokens})
        return response.status_code, response.status_code != 200 or "text" in response.json()
    with http.stream("POST", f"{base}/v1/rationalize", json={**item, "max_tokens": max_tokens, "stream": True}) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, True
        payloads = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    events = [json.loads(p) for p in payloads[:-1]]
    return 200, bool(payloads) and payloads[-1] == "[DONE]" and not any("error" in e for e in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--onnx-bundle", help="an ONNX export to serve too (rationalize export default --onnx int8)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--requests-per-level", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, help="CPU threads of every server (default: what is free now)")
    parser.add_argument("--soak-seconds", type=float, default=0, help="0: no soak")
    parser.add_argument("--soak-clients", type=int, default=16)
    parser.add_argument("--soak-max-queue", type=int, default=4, help="small, so that 503 can occur")
    parser.add_argument("--soak-backoff", type=float, default=1.0,
                        help="seconds a client waits after a 503 (the server's Retry-After says 1)")
    parser.add_argument("--out", help="also write the JSON object here")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    from rationalizer import Rationalizer
    from rationalizer.atomic import atomic_write_text
    from rationalizer.backends.base import default_threads
    from rationalizer.dataset import read_examples

    threads = args.threads or default_threads()
    items = [{"question": e.question, "choices": e.choices}
             for e in read_examples(args.data, limit=max(args.requests_per_level, 8))]
    with Rationalizer.load(None, backend="llamacpp", threads=1) as r:
        prompts = [str(r.prompt(i["question"], i["choices"])) for i in items]
        stop, context = list(r.manifest.prompt.stop), r.manifest.generation.context_length
    plain = [{**i, "max_tokens": args.max_tokens, "temperature": 0} for i in items]
    completions = [{"model": "default", "prompt": p, "max_tokens": args.max_tokens, "temperature": 0.0, "top_p": 1.0,
                    # llama.cpp's server defaults (top_k 40, min_p 0.05, repeat_penalty 1.1) are not the runtime's
                    "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "stop": stop} for p in prompts]
    queue = max(64, max(levels))
    rows: dict[str, Any] = {}
    for name, bundle in (("serve_gguf", None), ("serve_onnx", args.onnx_bundle)):
        if name == "serve_onnx" and not bundle:
            rows[name] = {"skipped": "no --onnx-bundle given"}
            continue
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running(serve_command(bundle, port, threads, queue), f"{base}/health"):
            rows[name] = {"backend": httpx.get(f"{base}/health").json()["backend"], "bundle": bundle or "default",
                          **run_row(name, f"{base}/v1/rationalize", plain, levels, args.requests_per_level,
                                    read_rationale)}
    port = free_port()
    with running(llama_server_command(port, threads, context), f"http://127.0.0.1:{port}/v1/models"):
        rows["llama_cpp_server"] = {"backend": "llama-cpp-python server", "bundle": "default GGUF + LoRA adapter",
                                    **run_row("llama_cpp_server", f"http://127.0.0.1:{port}/v1/completions",
                                              completions, levels, args.requests_per_level, read_completion)}

    texts = {name: {i: t for level in row.get("levels", []) for i, t in level.pop("_texts").items()}
             for name, row in rows.items()}
    figures: dict[str, Any] = {
        "data": args.data, "max_tokens": args.max_tokens, "threads": threads, "levels": levels,
        "requests_per_level": args.requests_per_level, "cpu_count": os.cpu_count(), "rows": rows,
        "greedy_text_match": {f"serve_gguf_vs_{peer}": same_texts(texts["serve_gguf"], texts[peer])
                              for peer in ("llama_cpp_server", "serve_onnx") if texts[peer]},
    }
    if args.soak_seconds > 0:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        print(f"soak: {args.soak_clients} clients for {args.soak_seconds:g} s...", file=sys.stderr, flush=True)
        with running(serve_command(None, port, threads, args.soak_max_queue), f"{base}/health") as proc:
            figures["soak"] = {"max_queue": args.soak_max_queue,
                               **soak(base, proc.pid, items, args.soak_seconds, args.soak_clients, args.max_tokens,
                                      args.soak_backoff)}
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    if not figures.get("soak", {"ok": True})["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
