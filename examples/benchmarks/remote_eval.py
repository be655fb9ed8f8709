"""Eval wall time: the local llama.cpp backend against the remote backend (``--backend http --concurrency N``).

Starts llama-cpp-python's server (``python -m rationalizer.backends.llama_server``) on 127.0.0.1 with the
embedded default GGUF and its LoRA adapter (what the local backend runs), then evaluates the same questions
twice with the same settings: once locally, once through the server with N questions in flight. Prints both
wall times, their ratio and whether the answers agree.

    python examples/benchmarks/remote_eval.py [--data ../shared/data/strategyqa/dev.jsonl] [--limit 100]
        [--concurrency 4] [--threads N] [--judges]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request

from rationalizer import Bundle
from rationalizer.backends.base import default_threads
from rationalizer.backends.llamacpp import gguf_files
from rationalizer.evaluation import EvalConfig, run_evaluation


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's server over the default bundle's GGUF and adapter, on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model, adapter = gguf_files(Bundle.load())
    command = [sys.executable, "-m", "rationalizer.backends.llama_server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--n_threads_batch", str(threads),
               # the stock server cuts a stream short as soon as another request waits
               "--interrupt_requests", "False", "--model_alias", "default"]
    if adapter is not None:
        command += ["--lora_path", str(adapter)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2).read()
            return proc, base
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama-cpp-python's server did not start")


def timed(config: EvalConfig, **options) -> tuple[float, list[dict]]:
    """Wall seconds of one evaluation (model load included) and its records."""
    start = time.perf_counter()
    result = run_evaluation(config, restart=True, **options)
    return time.perf_counter() - start, result.runs[0].records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/strategyqa/dev.jsonl")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the local backend and of the server (default: the free cores)")
    parser.add_argument("--judges", action="store_true",
                        help="also run the default simulator and verifier (local models, the same in both runs)")
    args = parser.parse_args()
    args.threads = args.threads or default_threads()  # one count for both, read before either runs
    judges = {} if args.judges else {"simulator": "none", "verifier": "none"}
    local_config = EvalConfig(data=args.data, limit=args.limit, **judges)
    remote_config = EvalConfig(data=args.data, limit=args.limit, concurrency=args.concurrency, **judges)
    local_s, local_records = timed(local_config, backend="llamacpp", threads=args.threads)
    proc, base = start_server(args.threads)
    try:
        remote_s, remote_records = timed(remote_config, backend="http", endpoint=base, endpoint_model="default",
                                         threads=args.threads)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    same = sum(a["answer"] == b["answer"] and a["text"] == b["text"] for a, b in zip(local_records, remote_records))
    n = len(local_records)
    print(f"questions: {n} from {args.data}" + (" (with judges)" if args.judges else " (no judges)"))
    print(f"local llama.cpp backend:        {local_s:8.1f} s  ({n / local_s:.2f} questions/s)")
    print(f"remote (http, concurrency {args.concurrency}):  {remote_s:8.1f} s  ({n / remote_s:.2f} questions/s)")
    print(f"local / remote wall time:       {local_s / remote_s:8.2f}x")
    print(f"identical answer and text:      {same} of {n}")


if __name__ == "__main__":
    main()
