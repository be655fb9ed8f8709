"""Teacher throughput: `rationalize teach` against llama-cpp-python's server at 1 and N requests in flight.

Starts llama-cpp-python's server (``python -m rationalizer.backends.llama_server``) on 127.0.0.1 with the embedded default
GGUF, runs the same slice of questions once per in-flight setting (fresh output
each time), and prints rationales per minute, teacher accuracy and a few outputs.

    python examples/benchmarks/teach_throughput.py [--data ../shared/data/obqa/train_unrationalized.jsonl]
        [--limit 40] [--in-flight 1 4]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rationalizer import Bundle
from rationalizer.training.teachers import TeachConfig, load_teacher
from rationalizer.training.teachers.runner import teach


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's OpenAI-compatible server on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gguf = Bundle.load("base").main_file("gguf")
    proc = subprocess.Popen([sys.executable, "-m", "rationalizer.backends.llama_server", "--model", str(gguf),
                             "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
                             "--model_alias", "smol"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2).read()
            return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/obqa/train_unrationalized.jsonl")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", type=int, default=3, help="outputs to print")
    args = parser.parse_args()
    proc, base = start_server(args.threads)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.in_flight:
                out = Path(tmp) / f"in_flight_{n}.jsonl"
                config = TeachConfig(data=args.data, out=str(out), teacher=base, teacher_model="smol", in_flight=n,
                                     limit=args.limit, max_new_tokens=96)
                summary = teach(config, load_teacher(config))
                results.append((n, summary, [json.loads(line) for line in out.read_text().splitlines()]))
    finally:
        proc.terminate()
        proc.wait()
    print(f"teach on {args.limit} questions of {args.data}, llama_cpp.server with the default GGUF, {args.threads} threads")
    print("| in flight | done | failed | filtered | rationales/min | teacher accuracy | wall s |")
    print("|---|---|---|---|---|---|---|")
    for n, s, _ in results:
        acc = f"{s.teacher_accuracy:.3f} ({s.stated_correct}/{s.stated})" if s.teacher_accuracy is not None else "n/a"
        print(f"| {n} | {s.done} | {s.failed} | {sum(s.filtered.values())} | {s.per_minute:.1f} | {acc} | {s.wall_time_s:.1f} |")
    for row in results[0][2][: args.show]:
        print(f"\nQ: {row['question']}\nchoices: {row['choices']}\ngold: {row['answer']}\nrationale: {row['rationale']}"
              f"\nteacher answer: {row['teacher_answer']}")


if __name__ == "__main__":
    main()
