"""What the SDK costs on top of raw llama-cpp-python, plus cold-start figures.

Runs, in one process and on the same GGUF file with the same threads and greedy
settings, the SDK's ``Rationalizer.stream`` and llama-cpp-python's own
``create_completion(stream=True)``, alternating them so that both see the same
machine state. Then times ``import rationalizer`` and a cold
``rationalize "question"`` in fresh processes, with their peak RSS.

    python examples/benchmarks/runtime_overhead.py [--bundle PATH] [--tokens 128] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

PROMPT_QUESTION = "Write a long, detailed story about a penguin who wants to learn to fly."


def sdk_run(r, tokens: int) -> tuple[int, float, float]:
    """(tokens, seconds to first token, decode tokens/s) through the SDK."""
    out = r.rationalize(PROMPT_QUESTION, max_new_tokens=tokens)
    return out.tokens_generated, out.time_to_first_token_s or 0.0, out.tokens_per_s or 0.0


def raw_run(llm, prompt: str, tokens: int) -> tuple[int, float, float]:
    """The same generation through llama-cpp-python's high-level API."""
    start = time.perf_counter()
    first = None
    n = 0
    for _chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, top_k=0, top_p=1.0,
                                       min_p=0.0, repeat_penalty=1.0, stream=True):
        n += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return n, (first or end) - start, (n - 1) / (end - first) if first and n > 1 else 0.0


# VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's at fork and
# would report this benchmark's own memory, with two models loaded.
_PEAK_RSS_SNIPPET = (
    "\nimport sys\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)"
)


def subprocess_time(code: str, reps: int) -> tuple[float, float]:
    """Median wall seconds and max peak RSS (MB) of ``python -c code`` in fresh processes."""
    times, rss = [], []
    for _ in range(reps):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code + _PEAK_RSS_SNIPPET],
            capture_output=True, text=True, check=True,
        )
        times.append(time.perf_counter() - start)
        rss.append(int(proc.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), max(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="bundle folder (default: the embedded model)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args()

    import llama_cpp

    from rationalizer import Rationalizer
    from rationalizer.backends.base import default_threads

    threads = args.threads or default_threads()
    r = Rationalizer.load(args.bundle, threads=threads)
    gguf = r.bundle.main_file("gguf")
    from rationalizer.backends.llamacpp import plain_cpu_buffers

    with plain_cpu_buffers():  # the same weights layout as the SDK's llama.cpp backend
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=r.manifest.generation.context_length, n_threads=threads,
                              n_threads_batch=threads, verbose=False)
    prompt = r.prompt(PROMPT_QUESTION)
    sdk_run(r, 8), raw_run(llm, prompt, 8)  # warm both
    sdk, raw = [], []
    for _ in range(args.reps):
        sdk.append(sdk_run(r, args.tokens))
        raw.append(raw_run(llm, prompt, args.tokens))
    sdk_tps = statistics.median(x[2] for x in sdk)
    raw_tps = statistics.median(x[2] for x in raw)
    import_s, import_rss = subprocess_time("import rationalizer", args.reps)
    baseline_s, _ = subprocess_time("pass", args.reps)
    cli_code = ("import sys; sys.argv=['rationalize', 'Can a penguin fly?', '--choices', 'yes|no']\n"
                "from rationalizer.cli.main import cli\n"
                "try:\n    cli()\nexcept SystemExit:\n    pass")
    cli_s, cli_rss = subprocess_time(cli_code, max(3, args.reps // 2))
    figures = {
        "model": str(gguf),
        "threads": threads,
        "tokens_per_run": args.tokens,
        "generated": {"sdk": sdk[0][0], "raw": raw[0][0]},
        "decode_tokens_per_s": {"sdk": round(sdk_tps, 1), "raw_llama_cpp_python": round(raw_tps, 1)},
        "sdk_overhead_pct": round(100 * (raw_tps - sdk_tps) / raw_tps, 2),
        "time_to_first_token_s": {"sdk": round(statistics.median(x[1] for x in sdk), 4),
                                  "raw_llama_cpp_python": round(statistics.median(x[1] for x in raw), 4)},
        "import_rationalizer_s": round(import_s - baseline_s, 3),
        "import_rationalizer_peak_rss_mb": round(import_rss, 1),
        "cold_cli_answer_s": round(cli_s, 3),
        "cold_cli_peak_rss_mb": round(cli_rss, 1),
        "this_process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print("| measure | SDK | raw llama-cpp-python |")
    print("|---|---|---|")
    print(f"| decode tokens/s (median of {args.reps}) | {sdk_tps:.1f} | {raw_tps:.1f} |")
    print(f"| time to first token, s | {figures['time_to_first_token_s']['sdk']} | {figures['time_to_first_token_s']['raw_llama_cpp_python']} |")
    print(f"\nSDK overhead on decode: {figures['sdk_overhead_pct']}%")
    print(f"import rationalizer: {figures['import_rationalizer_s']} s over a bare interpreter, peak RSS {import_rss:.0f} MB")
    print(f"cold `rationalize \"Can a penguin fly?\"`: {cli_s:.2f} s from process start to answer, peak RSS {cli_rss:.0f} MB")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
